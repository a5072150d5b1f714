//! One `--threshold` rule, parsed from goose 0.19's grammar:
//! `<metric><op><value>[ for <request>]`.
//!
//! - metric: `pNN` with optional decimals (0 < NN < 100), `avg`, `max`,
//!   `error-rate` or `rps`;
//! - op: `<`, `<=`, `>`, `>=`;
//! - value: for a time a plain number with `us`, `ms` or `s` (a bare
//!   number is ms); for `error-rate` a number with an optional `%` (at most
//!   100); for `rps` a number;
//! - ` for <request>`: only the row named so, `GET /login` as the summary
//!   names it (or `/login` alone when one method has it).
//!
//! A rule that can never pass (`p95<0`, `error-rate>100%`, `rps<=0`) is
//! refused, as goose refuses it. A test checks that goose's own parser
//! accepts and refuses the same texts.

use std::fmt;
use std::str::FromStr;

/// The longest rule accepted, in bytes: a request name is at most 1 KiB
/// in the master's stats, and a rule names one.
pub const MAX_RULE_BYTES: usize = 1_100;

/// What a rule measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// A response-time percentile, percent in (0, 100).
    Percentile(f64),
    /// The mean response time.
    Average,
    /// The slowest response time.
    Maximum,
    /// Failed requests as a percent of all requests.
    ErrorRate,
    /// Requests per second while the run holds its users (all spawned).
    RequestsPerSecond,
}

impl Metric {
    /// Whether the value is a time (microseconds in [`Rule::limit`]).
    pub fn is_time(self) -> bool {
        matches!(
            self,
            Metric::Percentile(_) | Metric::Average | Metric::Maximum
        )
    }
}

/// How a rule compares what it observes with its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
}

impl Operator {
    /// Whether `observed` passes against `limit`.
    pub fn passes(self, observed: f64, limit: f64) -> bool {
        match self {
            Operator::Less => observed < limit,
            Operator::LessOrEqual => observed <= limit,
            Operator::Greater => observed > limit,
            Operator::GreaterOrEqual => observed >= limit,
        }
    }
}

/// One pass/fail rule, e.g. `p95<500ms` or `error-rate<1% for GET /cart`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule as given, trimmed: how every report names it.
    pub text: String,
    /// What it measures.
    pub metric: Metric,
    /// How it compares.
    pub operator: Operator,
    /// The limit: µs for a time, percent for `error-rate`, requests per
    /// second for `rps`.
    pub limit: f64,
    /// The request it judges (`GET /login`), or `None` for all together.
    pub request: Option<String>,
}

/// What metrics a rule can name.
const METRICS: &str = "use pNN (such as p95 or p99.9), avg, max, error-rate or rps";

/// Why `rule` was refused.
fn refuse(rule: &str, why: &str) -> String {
    format!("threshold {rule:?}: {why}")
}

/// `text` as a number when it is ASCII digits with at most one `.`: no
/// sign, exponent, NaN or infinity.
fn plain_number(text: &str) -> Option<f64> {
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    let points = text.bytes().filter(|b| *b == b'.').count();
    if digits == 0 || points > 1 || digits + points != text.len() {
        return None;
    }
    text.parse().ok()
}

fn metric(rule: &str, name: &str) -> Result<Metric, String> {
    Ok(match name {
        "avg" => Metric::Average,
        "max" => Metric::Maximum,
        "error-rate" => Metric::ErrorRate,
        "rps" => Metric::RequestsPerSecond,
        "" => {
            return Err(refuse(
                rule,
                &format!("no metric before the operator; {METRICS}"),
            ))
        }
        _ => match name.strip_prefix('p').map(plain_number) {
            Some(Some(p)) if p > 0.0 && p < 100.0 => Metric::Percentile(p),
            Some(Some(_)) => {
                return Err(refuse(
                    rule,
                    "a percentile is above 0 and below 100, such as p95 or p99.9",
                ))
            }
            _ => {
                return Err(refuse(
                    rule,
                    &format!("{name:?} is not a metric; {METRICS}"),
                ))
            }
        },
    })
}

fn operator(rule: &str, rest: &str) -> Result<(Operator, usize), String> {
    let (op, len) = if rest.starts_with("<=") {
        (Operator::LessOrEqual, 2)
    } else if rest.starts_with(">=") {
        (Operator::GreaterOrEqual, 2)
    } else if rest.starts_with('<') {
        (Operator::Less, 1)
    } else if rest.starts_with('>') {
        (Operator::Greater, 1)
    } else {
        return Err(refuse(rule, "the operator is one of <, <=, > or >="));
    };
    if rest[len..].starts_with(['<', '>', '=']) {
        return Err(refuse(rule, "the operator is one of <, <=, > or >="));
    }
    Ok((op, len))
}

fn limit(rule: &str, metric: Metric, value: &str) -> Result<f64, String> {
    if metric.is_time() {
        let (number, micros) = if let Some(n) = value.strip_suffix("us") {
            (n, 1.0)
        } else if let Some(n) = value.strip_suffix("ms") {
            (n, 1_000.0)
        } else if let Some(n) = value.strip_suffix('s') {
            (n, 1_000_000.0)
        } else {
            (value, 1_000.0)
        };
        return plain_number(number).map(|n| n * micros).ok_or_else(|| {
            refuse(
                rule,
                &format!("{value:?} is not a time: a number with us, ms or s, such as 500ms (a bare number is ms)"),
            )
        });
    }
    if metric == Metric::ErrorRate {
        return match plain_number(value.strip_suffix('%').unwrap_or(value)) {
            Some(p) if p <= 100.0 => Ok(p),
            Some(_) => Err(refuse(rule, "an error rate is at most 100%")),
            None => Err(refuse(
                rule,
                &format!("{value:?} is not a percent: a number with an optional %, such as 1%"),
            )),
        };
    }
    plain_number(value).ok_or_else(|| {
        refuse(
            rule,
            &format!("{value:?} is not a number of requests per second, such as 200"),
        )
    })
}

/// Why a rule can never pass, if it cannot.
fn never_passes(metric: Metric, operator: Operator, limit: f64) -> Option<&'static str> {
    match (metric, operator) {
        (Metric::ErrorRate, Operator::Less) if limit == 0.0 => Some("no error rate is below 0%"),
        (Metric::RequestsPerSecond, Operator::Less | Operator::LessOrEqual) if limit == 0.0 => {
            Some("a rate is judged only once requests were made, so it is above 0")
        }
        (_, Operator::Less) if limit == 0.0 => Some("no response time is below 0"),
        (Metric::ErrorRate, Operator::Greater) if limit == 100.0 => {
            Some("no error rate is above 100%")
        }
        _ => None,
    }
}

impl FromStr for Rule {
    type Err = String;

    /// Parses one rule; the error names the rule and what is wrong with it.
    fn from_str(text: &str) -> Result<Rule, String> {
        let rule = text.trim();
        if rule.len() > MAX_RULE_BYTES {
            return Err(format!(
                "a threshold is at most {MAX_RULE_BYTES} bytes (got {})",
                rule.len()
            ));
        }
        if rule.is_empty() {
            return Err(refuse(
                rule,
                "a rule cannot be empty; give one such as p95<500ms",
            ));
        }
        let Some(at) = rule.find(['<', '>', '=']) else {
            return Err(refuse(
                rule,
                "no operator; use <, <=, > or >=, as in p95<500ms",
            ));
        };
        let metric = metric(rule, rule[..at].trim())?;
        let (operator, len) = operator(rule, &rule[at..])?;
        // The value ends at " for ", which names the request.
        let rest = format!(" {}", rule[at + len..].trim());
        let (value, request) = match rest.find(" for ") {
            Some(i) => (rest[..i].trim(), Some(rest[i + 5..].trim())),
            None => match rest.strip_suffix(" for") {
                Some(value) => (value.trim(), Some("")),
                None => (rest.trim(), None),
            },
        };
        if value.is_empty() {
            return Err(refuse(rule, "no value after the operator"));
        }
        if request == Some("") {
            return Err(refuse(
                rule,
                "\"for\" needs a request name as the summary shows it, such as GET /login",
            ));
        }
        let limit = limit(rule, metric, value)?;
        if let Some(why) = never_passes(metric, operator, limit) {
            return Err(refuse(rule, &format!("it can never pass: {why}")));
        }
        Ok(Rule {
            text: rule.to_string(),
            metric,
            operator,
            limit,
            request: request.map(str::to_string),
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Parses a `--threshold` value for clap.
pub fn parse_rule(text: &str) -> Result<Rule, String> {
    text.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Rule {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn rules_read_as_goose_reads_them() {
        let r = rule(" p99.9 <= 2s for GET /checkout ");
        assert_eq!(r.metric, Metric::Percentile(99.9));
        assert_eq!(r.operator, Operator::LessOrEqual);
        assert_eq!(r.limit, 2_000_000.0);
        assert_eq!(r.request.as_deref(), Some("GET /checkout"));
        assert_eq!(r.to_string(), "p99.9 <= 2s for GET /checkout");
        assert_eq!(rule("p95<500").limit, 500_000.0, "a bare number is ms");
        assert_eq!(rule("avg<250us").limit, 250.0);
        assert_eq!(rule("max<1.5ms").limit, 1_500.0);
        assert_eq!(rule("error-rate<1%").limit, 1.0);
        assert_eq!(rule("error-rate<=0.5").limit, 0.5);
        assert_eq!(rule("rps>=200").metric, Metric::RequestsPerSecond);
        assert_eq!(rule("error-rate<=0%").limit, 0.0, "no failure at all");
    }

    #[test]
    fn bad_rules_are_refused_naming_the_rule_and_the_fault() {
        for (text, says) in [
            ("", "cannot be empty"),
            ("p95 500ms", "no operator"),
            ("<500ms", "no metric"),
            ("p100<1s", "above 0 and below 100"),
            ("p0<1s", "above 0 and below 100"),
            ("median<1s", "is not a metric"),
            ("p95=>1s", "operator"),
            ("p95<<1s", "operator"),
            ("p95==1s", "operator"),
            ("p95<", "no value"),
            ("p95<1h", "not a time"),
            ("p95<-1ms", "not a time"),
            ("p95<1e3", "not a time"),
            ("error-rate<101%", "at most 100%"),
            ("error-rate<x", "not a percent"),
            ("rps>fast", "not a number of requests"),
            ("p95<0", "never pass"),
            ("error-rate<0%", "never pass"),
            ("error-rate>100%", "never pass"),
            ("rps<=0", "never pass"),
            ("rps<0", "never pass"),
            ("p95<1s for", "needs a request name"),
            ("p95<1s for  ", "needs a request name"),
        ] {
            let err = text.parse::<Rule>().expect_err(text);
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(err.contains("threshold"), "{text:?}: {err}");
        }
        let long = format!("p95<1s for GET /{}", "x".repeat(MAX_RULE_BYTES));
        assert!(long.parse::<Rule>().unwrap_err().contains("at most"));
    }

    /// goose 0.19, the engine the workers run, is the grammar's reference:
    /// its parser and ours accept and refuse the same rules.
    #[test]
    fn goose_accepts_and_refuses_the_same_rules() {
        for text in [
            "p95<500ms",
            "p99.9<=2s for GET /checkout",
            "avg<250us",
            "max>=1",
            "error-rate<1%",
            "error-rate<=0%",
            "error-rate<=100",
            "error-rate>100%",
            "error-rate<101%",
            "rps>=200",
            "rps>0",
            "rps<=0",
            "rps<0",
            "p95<0",
            "p95<=0",
            "p100<1s",
            "p0.5<1s",
            "p95<1.2.3ms",
            "p95 < 10 ms",
            "p95<1s for",
            "p95<1s for GET /a for b",
            "median<1s",
            "p95=>1s",
            "p95==1s",
            "p95>=",
            "",
            "rps>1e3",
            "avg<+5ms",
        ] {
            let ours = text.parse::<Rule>();
            let goose = text.parse::<goose::threshold::Threshold>();
            assert_eq!(
                ours.is_ok(),
                goose.is_ok(),
                "{text:?}: ours {ours:?}, goose {goose:?}"
            );
            if let (Ok(ours), Ok(goose)) = (&ours, &goose) {
                assert_eq!(ours.to_string(), goose.to_string(), "{text:?}");
            }
        }
    }
}
