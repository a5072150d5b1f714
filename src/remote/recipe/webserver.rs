//! The `webserver` recipe: nginx, the system under test, serving a static
//! page on :80.
//!
//! nginx comes from the host's package manager (dnf on Amazon Linux, apt-get
//! on Ubuntu/Debian), skipped when `nginx -v` already works. It runs from
//! spotload's own config under `BASE/nginx` (page, logs, pid, temp paths),
//! the same on every distribution, instead of the distribution's default
//! site; the distribution's `nginx.service` is disabled so :80 is ours.

use std::time::Duration;

use super::{Step, BASE};

const CONF: &str = "/opt/spotload/nginx/nginx.conf";

/// The steps, in order.
pub fn webserver_steps(systemd: bool) -> Vec<Step> {
    vec![
        Step::new(
            "install nginx",
            "dnf/yum/apt-get install -y nginx",
            INSTALL.into(),
        )
        .limit(Duration::from_secs(15 * 60)),
        Step::new(
            "configure nginx",
            format!("nginx -t -c {CONF}"),
            configure_script(),
        ),
        Step::new("start nginx", start_command(systemd), start_script(systemd)),
        Step::new(
            "check nginx answers on :80",
            "curl http://127.0.0.1/",
            CHECK.into(),
        ),
    ]
}

/// Amazon Linux 2023 has dnf, older Amazon Linux/CentOS yum, Ubuntu and
/// Debian apt-get; a fresh Ubuntu may still hold the dpkg lock.
const INSTALL: &str = r#"if nginx -v >/dev/null 2>&1; then
    echo "nginx already installed: $(nginx -v 2>&1)"
    exit 0
fi
if command -v dnf >/dev/null 2>&1; then
    dnf install -y nginx
elif command -v yum >/dev/null 2>&1; then
    yum install -y nginx
elif command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -q &&
        apt-get -o DPkg::Lock::Timeout=300 install -y -q nginx
else
    echo "no dnf, yum or apt-get on this host: install nginx by hand" >&2
    exit 3
fi
nginx -v"#;

/// nginx's error log option `-e` (nginx 1.19.5+) keeps even its start-up
/// messages in BASE/nginx; older ones log those to the compiled-in path.
const ERROR_LOG_FLAG: &str = r#"E=""
if nginx -h 2>&1 | grep -q -- '-e filename'; then E="-e /opt/spotload/nginx/error.log"; fi"#;

fn configure_script() -> String {
    format!(
        r#"mkdir -p {BASE}/www {BASE}/nginx/temp
cat > {BASE}/www/index.html <<'SPOTLOAD_PAGE'
<!doctype html>
<html><head><meta charset="utf-8"><meta name="generator" content="spotload">
<title>spotload target</title></head>
<body><h1>spotload target</h1><p>A static page served by nginx for load tests.</p></body></html>
SPOTLOAD_PAGE
cat > {CONF} <<'SPOTLOAD_CONF'
# Written by spotload deploy; replaced on every deploy.
worker_processes auto;
worker_rlimit_nofile 65536;
pid {BASE}/nginx/nginx.pid;
error_log {BASE}/nginx/error.log;
events {{ worker_connections 16384; }}
http {{
    types {{ text/html html; text/css css; application/javascript js; }}
    default_type application/octet-stream;
    access_log {BASE}/nginx/access.log;
    client_body_temp_path {BASE}/nginx/temp/client_body;
    proxy_temp_path {BASE}/nginx/temp/proxy;
    fastcgi_temp_path {BASE}/nginx/temp/fastcgi;
    uwsgi_temp_path {BASE}/nginx/temp/uwsgi;
    scgi_temp_path {BASE}/nginx/temp/scgi;
    sendfile on;
    keepalive_requests 1000000;
    server {{
        listen 80 default_server;
        server_name _;
        root {BASE}/www;
        location / {{ }}
    }}
}}
SPOTLOAD_CONF
chmod -R a+rX {BASE}/www
{ERROR_LOG_FLAG}
nginx $E -t -q -c {CONF}
echo "config {CONF} is valid""#
    )
}

const DESCRIPTION: &str = "nginx serving the load test target";
/// nginx writes this itself (the config's `pid`).
const PID_FILE: &str = "/opt/spotload/nginx/nginx.pid";

/// Stops a previous spotload nginx, under systemd or detached.
fn stop_script() -> String {
    format!(
        r#"if [ -d /run/systemd/system ] && systemctl cat spotload-nginx.service >/dev/null 2>&1; then
    systemctl stop spotload-nginx.service && echo "stopped spotload-nginx.service"
fi
stop_pidfile {PID_FILE} nginx
"#
    )
}

fn start_command(systemd: bool) -> String {
    if systemd {
        "systemctl restart spotload-nginx".into()
    } else {
        format!("nginx -c {CONF}")
    }
}

/// nginx forks itself and writes its own pid file, so it has its own start
/// and stop rather than [`super::service::Service`]'s.
fn start_script(systemd: bool) -> String {
    let mut script = format!("{ERROR_LOG_FLAG}\n{}", stop_script());
    if systemd {
        script.push_str(&format!(
            r#"if systemctl cat nginx.service >/dev/null 2>&1; then
    systemctl disable --now nginx.service >/dev/null 2>&1 || true
fi
NGINX=$(command -v nginx)
cat > /etc/systemd/system/spotload-nginx.service <<SPOTLOAD_UNIT
[Unit]
Description=spotload: {DESCRIPTION}
Wants=network-online.target
After=network-online.target

[Service]
Type=forking
PIDFile={PID_FILE}
ExecStartPre=$NGINX $E -t -q -c {CONF}
ExecStart=$NGINX $E -c {CONF}
ExecReload=/bin/kill -s HUP \$MAINPID
Restart=on-failure
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
SPOTLOAD_UNIT
systemctl daemon-reload
systemctl enable spotload-nginx.service >/dev/null 2>&1
systemctl restart spotload-nginx.service
systemctl is-active --quiet spotload-nginx.service || {{ systemctl status --no-pager spotload-nginx.service >&2; tail -n 20 {BASE}/nginx/error.log >&2; exit 1; }}
echo "spotload-nginx.service is active"
"#
        ));
    } else {
        script.push_str(&format!(
            r#"if ! nginx $E -c {CONF}; then tail -n 20 {BASE}/nginx/error.log >&2; exit 1; fi
i=0
until running {PID_FILE} nginx >/dev/null || [ $i -ge 30 ]; do sleep 0.1; i=$((i + 1)); done
pid=$(running {PID_FILE} nginx) || {{ echo "nginx did not stay up" >&2; tail -n 20 {BASE}/nginx/error.log >&2; exit 1; }}
echo "started nginx, pid $pid"
"#
        ));
    }
    script
}

/// The page must be spotload's (a distribution default page on :80 means
/// another nginx still holds the port).
const CHECK: &str = r#"wait_http http://127.0.0.1:80/ 15 || exit 1
if ! fetch http://127.0.0.1:80/ | grep -q 'content="spotload"'; then
    echo "port 80 answers, but not with spotload's page: another web server holds it" >&2
    exit 1
fi
echo "nginx answers on :80""#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_pid_file_is_the_one_its_config_writes() {
        assert!(configure_script().contains("pid /opt/spotload/nginx/nginx.pid;"));
        assert!(start_script(false).contains("running /opt/spotload/nginx/nginx.pid nginx"));
    }

    #[test]
    fn systemd_hosts_get_a_unit_and_lose_the_distribution_service() {
        let script = start_script(true);
        assert!(script.contains("systemctl disable --now nginx.service"));
        assert!(script.contains("ExecStart=$NGINX $E -c /opt/spotload/nginx/nginx.conf"));
    }
}
