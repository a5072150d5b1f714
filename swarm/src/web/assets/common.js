// Chart drawing and number formatting shared by the page (served as
// /common.js) and the report (inlined, so a saved report stands alone).
"use strict";

/* ===================== chart ===================== */
/*
 * drawLineChart(canvas, series, opts)
 *   series: [{label, color, points: [[xEpochSeconds, yOrNull], ...]}]
 *   opts:   {yLabel, yFormat(v)->str, xFormat(v)->str, minYMax, maxGap (s), emptyText}
 * Draws axes, gridlines, tick labels and a legend (with latest values).
 * Gaps (null y, or x jumps bigger than maxGap) break the line.
 */
function drawLineChart(canvas, series, opts) {
  opts = opts || {};
  var dpr = window.devicePixelRatio || 1;
  var cssW = canvas.clientWidth, cssH = canvas.clientHeight;
  if (!cssW || !cssH) return;                      // hidden: draw later
  if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
  }
  var ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  var font = "12px system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif";
  ctx.font = font;
  var yFmt = opts.yFormat || function (v) { return chartNum(v); };
  var xFmt = opts.xFormat || chartTime;

  // data range
  var xMin = Infinity, xMax = -Infinity, yMax = 0;
  series.forEach(function (s) {
    s.points.forEach(function (p) {
      if (p[0] < xMin) xMin = p[0];
      if (p[0] > xMax) xMax = p[0];
      if (p[1] != null && isFinite(p[1]) && p[1] > yMax) yMax = p[1];
    });
  });
  var hasData = xMin !== Infinity;
  if (!hasData) { var now = Date.now() / 1000; xMin = now - 60; xMax = now; }
  if (xMax - xMin < 10) { xMin = xMax - 10; }
  yMax = Math.max(yMax, opts.minYMax || 1);
  var yt = niceTicks(yMax, 5);

  // layout
  var legendH = 24;
  var labelW = 0;
  yt.ticks.forEach(function (t) { labelW = Math.max(labelW, ctx.measureText(yFmt(t)).width); });
  var padL = Math.ceil(labelW) + 14 + (opts.yLabel ? 16 : 0), padR = 14, padT = legendH + 8, padB = 26;
  var w = cssW - padL - padR, h = cssH - padT - padB;
  if (w < 20 || h < 20) return;
  function X(x) { return padL + (x - xMin) / (xMax - xMin) * w; }
  function Y(y) { return padT + h - y / yt.max * h; }

  // grid + y ticks
  ctx.textBaseline = "middle"; ctx.textAlign = "right";
  yt.ticks.forEach(function (t) {
    var y = Math.round(Y(t)) + 0.5;
    ctx.strokeStyle = t === 0 ? "#b8c0cc" : "#eceff3"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(padL, y); ctx.lineTo(padL + w, y); ctx.stroke();
    ctx.fillStyle = "#667085"; ctx.fillText(yFmt(t), padL - 8, y);
  });
  if (opts.yLabel) {
    ctx.save(); ctx.translate(12, padT + h / 2); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center"; ctx.fillStyle = "#667085"; ctx.fillText(opts.yLabel, 0, 0); ctx.restore();
  }
  // x ticks
  var span = xMax - xMin;
  var steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  var maxTicks = Math.max(2, Math.floor(w / 90)), step = steps[steps.length - 1];
  for (var i = 0; i < steps.length; i++) { if (span / steps[i] <= maxTicks) { step = steps[i]; break; } }
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (var t = Math.ceil(xMin / step) * step; hasData && t <= xMax + 1e-9; t += step) {
    var x = Math.round(X(t)) + 0.5;
    ctx.strokeStyle = "#f1f3f6"; ctx.beginPath(); ctx.moveTo(x, padT); ctx.lineTo(x, padT + h); ctx.stroke();
    ctx.strokeStyle = "#b8c0cc"; ctx.beginPath(); ctx.moveTo(x, padT + h); ctx.lineTo(x, padT + h + 4); ctx.stroke();
    var lbl = xFmt(t, step), half = ctx.measureText(lbl).width / 2;
    if (x - half < 0 || x + half > cssW) continue;   // would be clipped
    ctx.fillStyle = "#667085"; ctx.fillText(lbl, x, padT + h + 7);
  }
  ctx.strokeStyle = "#b8c0cc";
  ctx.beginPath(); ctx.moveTo(padL + 0.5, padT); ctx.lineTo(padL + 0.5, padT + h); ctx.stroke();

  // lines
  var maxGap = opts.maxGap || 15;
  ctx.save();
  ctx.beginPath(); ctx.rect(padL, padT - 2, w + 2, h + 4); ctx.clip();
  series.forEach(function (s) {
    ctx.strokeStyle = s.color; ctx.lineWidth = 2; ctx.lineJoin = "round";
    ctx.beginPath();
    var pen = false, prevX = null, lone = [];
    s.points.forEach(function (p, idx) {
      if (p[1] == null || !isFinite(p[1])) { pen = false; prevX = p[0]; return; }
      if (prevX != null && p[0] - prevX > maxGap) pen = false;
      if (pen) ctx.lineTo(X(p[0]), Y(p[1]));
      else {
        ctx.moveTo(X(p[0]), Y(p[1]));
        var nx = s.points[idx + 1];
        if (!nx || nx[1] == null || nx[0] - p[0] > maxGap) lone.push(p);
      }
      pen = true; prevX = p[0];
    });
    ctx.stroke();
    ctx.fillStyle = s.color;
    lone.forEach(function (p) { ctx.beginPath(); ctx.arc(X(p[0]), Y(p[1]), 2.5, 0, Math.PI * 2); ctx.fill(); });
  });
  ctx.restore();

  // legend (top-left), with latest value
  ctx.textBaseline = "middle"; ctx.textAlign = "left"; ctx.font = font;
  var lx = padL;
  series.forEach(function (s) {
    var last = null;
    for (var j = s.points.length - 1; j >= 0; j--) { if (s.points[j][1] != null) { last = s.points[j][1]; break; } }
    var text = s.label + (last != null ? ":  " + yFmt(last) : "");
    ctx.fillStyle = s.color; ctx.fillRect(lx, 7, 14, 4);
    ctx.fillStyle = "#344054"; ctx.fillText(text, lx + 20, 9);
    lx += 20 + ctx.measureText(text).width + 22;
  });
  if (!hasData) {
    ctx.textAlign = "center"; ctx.fillStyle = "#98a2b3";
    ctx.fillText(opts.emptyText || "No data yet", padL + w / 2, padT + h / 2);
  }
}
function niceTicks(max, n) {
  var raw = max / n, mag = Math.pow(10, Math.floor(Math.log10(raw))), r = raw / mag;
  var step = (r <= 1 ? 1 : r <= 2 ? 2 : r <= 2.5 ? 2.5 : r <= 5 ? 5 : 10) * mag;
  var top = Math.ceil(max / step - 1e-9) * step, ticks = [];
  for (var v = 0; v <= top + step / 2; v += step) ticks.push(+v.toFixed(10));
  return { max: top, ticks: ticks };
}
function chartNum(v) {
  if (v == null) return "";
  var a = Math.abs(v);
  if (a >= 1e6) return +(v / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return +(v / 1e3).toFixed(1) + "k";
  if (a >= 100 || v === Math.round(v)) return Math.round(v).toLocaleString("en-US");
  return +v.toFixed(a < 1 ? 2 : 1) + "";
}
function chartTime(t, step) {
  var d = new Date(t * 1000);
  function p(n) { return (n < 10 ? "0" : "") + n; }
  var s = p(d.getHours()) + ":" + p(d.getMinutes());
  return (step || 1) < 60 ? s + ":" + p(d.getSeconds()) : s;
}
/* =================== end chart =================== */

/* ------------------------------ formatting ------------------------------ */
var NF0 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
var NF1 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
var NF2 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
function isNum(v) { return typeof v === "number" && isFinite(v); }
function fmtInt(v) { return isNum(v) ? NF0.format(Math.round(v)) : "\u2014"; }
var NF3 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 3, maximumFractionDigits: 3 });
/* A time in ms: to the microsecond where that is not noise (0.412, 12.34). */
function fmtMs(v) {
  if (!isNum(v)) return "\u2014";
  if (v === 0) return "0";
  if (Number.isInteger(v)) return NF0.format(v);   // Locust's buckets: whole ms
  if (v < 10) return NF3.format(v);
  if (v < 100) return NF2.format(v);
  if (v < 1000) return NF1.format(v);
  return NF0.format(Math.round(v));
}
function fmtRate(v) { return isNum(v) ? NF1.format(v) : "\u2014"; }
function fmtPct(ratio) {
  if (!isNum(ratio) || ratio <= 0) return "0%";
  var p = ratio * 100;
  return (p < 1 ? NF2.format(p) : p < 100 ? NF1.format(p) : NF0.format(p)) + "%";
}
function fmtMB(bytes) { return isNum(bytes) ? NF1.format(bytes / 1048576) : "\u2014"; }
function esc(s) {
  return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
    return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
  });
}
function $(id) { return document.getElementById(id); }

/* ===================== statistics table ===================== */
/*
 * One row of the statistics table, the same in the page and the report;
 * `rps` and `fps` are the rates to show (current on the page, whole-run in
 * the report). The data-* attributes let tests read rows without parsing.
 */
function statsRowHtml(r, isAgg, rps, fps) {
  // Our master adds `precise` (microsecond histograms, or Locust's buckets
  // when a report had none); a Locust row has only the whole-ms keys.
  var p = r.precise || {};
  var pick = function (precise, locust) { return isNum(precise) ? precise : locust; };
  return '<tr data-name="' + esc(r.name) + '" data-method="' + esc(r.method || "") + '"' +
    ' data-requests="' + esc(r.num_requests) + '" data-failures="' + esc(r.num_failures) + '"' +
    (isAgg ? ' class="aggregated"' : "") + ">" +
    '<td><span class="method">' + esc(r.method || "") + "</span></td>" +
    '<td class="name">' + esc(r.name) + (p.source === "hdr+co" ?
      ' <span class="co-corrected" title="percentiles corrected for coordinated omission: ' +
      esc(p.co_backfilled) + ' requests back-filled by goose">CO-corrected</span>' : "") + "</td>" +
    '<td class="num">' + fmtInt(r.num_requests) + "</td>" +
    '<td class="num' + (r.num_failures > 0 ? " fail" : "") + '">' + fmtInt(r.num_failures) + "</td>" +
    '<td class="num">' + fmtMs(pick(p.p50_ms, r.median_response_time)) + "</td>" +
    '<td class="num">' + fmtMs(pick(p.p95_ms, r["response_time_percentile_0.95"])) + "</td>" +
    '<td class="num">' + fmtMs(pick(p.p99_ms, r["response_time_percentile_0.99"])) + "</td>" +
    '<td class="num">' + fmtMs(p.p999_ms) + "</td>" +
    '<td class="num">' + fmtMs(p.p9999_ms) + "</td>" +
    '<td class="num">' + fmtMs(pick(p.avg_ms, r.avg_response_time)) + "</td>" +
    '<td class="num">' + fmtMs(pick(p.min_ms, r.min_response_time)) + "</td>" +
    '<td class="num">' + fmtMs(pick(p.max_ms, r.max_response_time)) + "</td>" +
    '<td class="num">' + fmtInt(r.avg_content_length) + "</td>" +
    '<td class="num">' + fmtRate(rps) + "</td>" +
    '<td class="num' + (fps > 0 ? " fail" : "") + '">' + fmtRate(fps) + "</td></tr>";
}
