//! `POST /swarm` form fields, checked before anything starts.

use crate::api::SwarmForm;
use crate::co_mitigation::CoMitigation;
use crate::master::SwarmRequest;
use crate::timespan::parse_timespan;
use crate::worker::arrival::{valid_arrival_rate, MAX_ARRIVAL_RATE};

/// A form field that is missing or wrong; the message names it.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct FormError(pub String);

/// Validates Locust's `/swarm` fields: `user_count` (integer ≥ 0),
/// `spawn_rate` (number > 0), optional `host` (http or https URL),
/// optional `run_time` (`30s`, `5m`, `1h30m`), `user_classes` (repeated,
/// one class name each), our `co_mitigation` and our `arrival_rate`
/// (iterations per second, `0..=`[`MAX_ARRIVAL_RATE`]): the numbers and
/// the mitigation here, the rest as any [`SwarmForm`] is (see its
/// `TryFrom`).
///
/// With a test plan (`planned`), the plan sets the users and their pace,
/// so `user_count` and `spawn_rate` may be left out, as Locust's form may
/// with a `LoadTestShape`.
pub fn parse_swarm_form(
    fields: &[(String, String)],
    planned: bool,
) -> Result<SwarmRequest, FormError> {
    let get = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim());
    let user_count = match get("user_count") {
        None | Some("") if planned => 0,
        None | Some("") => return Err(FormError("Missing user_count (must be an integer)".into())),
        Some(v) => v.parse::<u64>().map_err(|_| {
            FormError(format!(
                "Invalid user_count value: {v:?} (must be a non-negative integer)"
            ))
        })?,
    };
    let spawn_rate = match get("spawn_rate") {
        None | Some("") if planned => 1.0,
        None | Some("") => {
            return Err(FormError(
                "Missing spawn_rate (must be a number above 0)".into(),
            ))
        }
        Some(v) => match v.parse::<f64>() {
            Ok(rate) if rate.is_finite() && rate > 0.0 => rate,
            _ => {
                return Err(FormError(format!(
                    "Invalid spawn_rate value: {v:?} (must be a number above 0)"
                )))
            }
        },
    };
    // Our extension: Locust's form has no such field.
    let co_mitigation = match get("co_mitigation") {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<CoMitigation>()
                .map_err(|e| FormError(format!("Invalid co_mitigation: {e}")))?,
        ),
    };
    let user_classes: Vec<String> = fields
        .iter()
        .filter(|(k, v)| k == "user_classes" && !v.trim().is_empty())
        .map(|(_, v)| v.trim().to_string())
        .collect();
    // Our extension too: empty turns the open model off, as 0 does.
    let arrival_rate = match get("arrival_rate") {
        None => None,
        Some("") => Some(0.0),
        Some(v) => match v.parse::<f64>() {
            Ok(rate) if valid_arrival_rate(rate) => Some(rate),
            _ => {
                return Err(FormError(format!(
                    "Invalid arrival_rate value: {v:?} (iterations per second, a number from 0 to {MAX_ARRIVAL_RATE}; 0 or empty turns the open model off)"
                )))
            }
        },
    };
    let mut request = SwarmRequest::try_from(SwarmForm {
        user_count,
        spawn_rate,
        host: get("host").map(str::to_string),
        run_time: get("run_time").map(str::to_string),
        co_mitigation,
        arrival_rate,
    })?;
    request.user_classes = (!user_classes.is_empty()).then_some(user_classes);
    Ok(request)
}

impl TryFrom<SwarmForm> for SwarmRequest {
    type Error = FormError;

    /// The one way a form becomes a request: the host checked (an empty one
    /// keeps the master's), the run time parsed. The numbers' bounds are the
    /// master's to check ([`SwarmRequest::check`]), against its workers.
    fn try_from(form: SwarmForm) -> Result<SwarmRequest, FormError> {
        let given = |field: Option<String>| field.filter(|v| !v.trim().is_empty());
        let host = match given(form.host) {
            None => None,
            Some(v) => Some(check_host(v.trim()).map_err(FormError)?),
        };
        let run_time = match given(form.run_time) {
            None => None,
            Some(v) => Some(
                parse_timespan(v.trim())
                    .map_err(|e| FormError(format!("Invalid run_time: {e}")))?,
            ),
        };
        Ok(SwarmRequest {
            user_count: form.user_count,
            spawn_rate: form.spawn_rate,
            host,
            run_time,
            co_mitigation: form.co_mitigation,
            user_classes: None,
            arrival_rate: form.arrival_rate,
        })
    }
}

/// A target must be an absolute http(s) URL with a host and no spaces.
pub fn check_host(host: &str) -> Result<String, String> {
    let bad = || {
        format!("Invalid host value: {host:?} (must be a URL such as http://10.0.0.5 or https://example.com:8443)")
    };
    let rest = host
        .strip_prefix("http://")
        .or_else(|| host.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>' || c == '"')
    {
        return Err(bad());
    }
    Ok(host.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn good_form() {
        let req = parse_swarm_form(
            &form(&[
                ("user_count", "20"),
                ("spawn_rate", "2.5"),
                ("host", "http://127.0.0.1:8080/"),
                ("run_time", "1m"),
                ("co_mitigation", "max"),
                ("user_classes", "Reader"),
                ("user_classes", " Browser "),
                ("user_classes", ""),
                ("arrival_rate", "300"),
            ]),
            false,
        )
        .expect("valid");
        assert_eq!(req.arrival_rate, Some(300.0));
        assert_eq!(
            req.user_classes,
            Some(vec!["Reader".to_string(), "Browser".to_string()])
        );
        assert_eq!(req.user_count, 20);
        assert_eq!(req.host.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(req.run_time, Some(std::time::Duration::from_secs(60)));
        assert_eq!(req.co_mitigation, Some(CoMitigation::Maximum));
    }

    #[test]
    fn a_plan_needs_no_users_or_rate() {
        let planned = parse_swarm_form(&form(&[("host", "http://127.0.0.1:1")]), true)
            .expect("a plan sets them");
        assert_eq!(planned.user_classes, None);
        let err = parse_swarm_form(&form(&[]), false).expect_err("no plan");
        assert!(err.0.contains("user_count"), "{err}");
        let err =
            parse_swarm_form(&form(&[("user_count", "x")]), true).expect_err("given: checked");
        assert!(err.0.contains("user_count"), "{err}");
    }

    #[test]
    fn a_swarm_form_becomes_a_request_checked_as_the_form_is() {
        let form = SwarmForm {
            host: Some("http://127.0.0.1:8080/".into()),
            run_time: Some("1m".into()),
            co_mitigation: Some(CoMitigation::Minimum),
            ..SwarmForm::new(3, 1.5)
        };
        let request = SwarmRequest::try_from(form).expect("valid");
        assert_eq!((request.user_count, request.spawn_rate), (3, 1.5));
        assert_eq!(request.host.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(request.run_time, Some(std::time::Duration::from_secs(60)));
        assert_eq!(request.co_mitigation, Some(CoMitigation::Minimum));
        let kept = SwarmForm {
            host: Some(String::new()),
            ..SwarmForm::new(1, 1.0)
        };
        assert_eq!(SwarmRequest::try_from(kept).expect("valid").host, None);
        for (form, name) in [
            (
                SwarmForm {
                    host: Some("not a url".into()),
                    ..SwarmForm::new(1, 1.0)
                },
                "host",
            ),
            (
                SwarmForm {
                    run_time: Some("soon".into()),
                    ..SwarmForm::new(1, 1.0)
                },
                "run_time",
            ),
        ] {
            let err = SwarmRequest::try_from(form).expect_err("invalid");
            assert!(err.0.contains(name), "{err} should name {name}");
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (
                form(&[
                    ("user_count", "5"),
                    ("spawn_rate", "1"),
                    ("co_mitigation", "sometimes"),
                ]),
                "co_mitigation",
            ),
            (
                form(&[("user_count", "abc"), ("spawn_rate", "1")]),
                "user_count",
            ),
            (
                form(&[
                    ("user_count", "5"),
                    ("spawn_rate", "1"),
                    ("arrival_rate", "lots"),
                ]),
                "arrival_rate",
            ),
            (
                form(&[
                    ("user_count", "5"),
                    ("spawn_rate", "1"),
                    ("arrival_rate", "-3"),
                ]),
                "arrival_rate",
            ),
            (
                form(&[
                    ("user_count", "5"),
                    ("spawn_rate", "1"),
                    ("arrival_rate", "1e9"),
                ]),
                "arrival_rate",
            ),
            (
                form(&[("user_count", "-3"), ("spawn_rate", "1")]),
                "user_count",
            ),
            (
                form(&[("user_count", "5"), ("spawn_rate", "0")]),
                "spawn_rate",
            ),
            (
                form(&[("user_count", "5"), ("spawn_rate", "NaN")]),
                "spawn_rate",
            ),
            (
                form(&[
                    ("user_count", "5"),
                    ("spawn_rate", "1"),
                    ("host", "not a url"),
                ]),
                "host",
            ),
            (
                form(&[
                    ("user_count", "5"),
                    ("spawn_rate", "1"),
                    ("run_time", "-5s"),
                ]),
                "run_time",
            ),
        ];
        for (fields, name) in cases {
            let err = parse_swarm_form(&fields, false).expect_err("invalid");
            assert!(err.0.contains(name), "{err} should name {name}");
        }
    }

    mod properties {
        use super::*;
        use crate::master::{MAX_RUN_TIME, MAX_SPAWN_RATE};
        use crate::worker::MAX_USERS_PER_WORKER;
        use proptest::collection::vec;
        use proptest::prelude::*;
        use std::time::Instant;

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => proptest::sample::select(&["user_count", "spawn_rate", "host", "run_time"][..])
                    .prop_map(str::to_string),
                1 => ".{0,10}",
            ]
        }

        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                proptest::sample::select(
                    &[
                        "18446744073709551615",
                        "18446744073709551616",
                        "1000000000000",
                        "100000",
                        "100001",
                        "0",
                        "-0",
                        "1e9",
                        "1e-300",
                        "4.9e-324",
                        "100000.00000000001",
                        "NaN",
                        "nan",
                        "inf",
                        "-inf",
                        "+1",
                        " 5 ",
                        "2592000",
                        "2592001",
                        "720h",
                        "720h1s",
                        "5124095576030431h",
                        "307445734561825860m",
                        "18446744073709551615s",
                        "1h30m",
                        "1h1h",
                        "http://127.0.0.1:8080/",
                        "https://",
                        "http://a b",
                        "",
                    ][..]
                )
                .prop_map(str::to_string),
                any::<u64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|f| f.to_string()),
                "[0-9]{1,25}[hms]?",
                "[0-9]{1,8}h[0-9]{1,8}m[0-9]{1,8}s",
                ".{0,20}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn any_form_is_refused_or_usable(
                fields in vec((key(), value()), 0..8),
                workers in prop_oneof![1usize..8, Just(1000usize), Just(usize::MAX)],
            ) {
                let Ok(request) = parse_swarm_form(&fields, false) else {
                    return Ok(());
                };
                if request.check(workers).is_err() {
                    return Ok(());
                }
                // Whatever passes both checks, the master can run.
                prop_assert!(request.spawn_rate.is_finite());
                prop_assert!(request.spawn_rate > 0.0 && request.spawn_rate <= MAX_SPAWN_RATE);
                prop_assert!(
                    request.user_count <= MAX_USERS_PER_WORKER.saturating_mul(workers as u64)
                );
                if let Some(run_time) = request.run_time {
                    prop_assert!(run_time <= MAX_RUN_TIME);
                    prop_assert!(Instant::now().checked_add(run_time).is_some());
                }
                if let Some(host) = &request.host {
                    prop_assert!(host.starts_with("http://") || host.starts_with("https://"));
                }
            }
        }
    }
}
