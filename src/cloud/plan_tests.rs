//! Unit tests for flag validation: every refusal happens before any I/O.

use super::*;

/// Valid flags for a fleet `demo` of 3 t3.micro workers, for tests to vary.
pub(crate) fn flags() -> LaunchFlags {
    LaunchFlags {
        fleet: "demo".into(),
        workers: 3,
        worker_type: "t3.micro".into(),
        master_type: "t3.small".into(),
        webserver_type: "t3.small".into(),
        ami: None,
        key_name: None,
        key_file: None,
        allow_cidr: vec!["198.51.100.7/32".into()],
        public_ip_url: DEFAULT_PUBLIC_IP_URL.into(),
        max_price: None,
        ttl: "2h".into(),
        wait_timeout: "10m".into(),
    }
}

#[test]
fn defaults_make_a_plan() {
    let plan = FleetPlan::from_flags(&flags()).unwrap();
    assert_eq!(plan.fleet.as_str(), "demo");
    assert_eq!(plan.role(Role::Worker).count, 3);
    assert_eq!(plan.role(Role::Worker).instance_types, vec!["t3.micro"]);
    assert_eq!(plan.role(Role::Master).instance_types, vec!["t3.small"]);
    assert_eq!(plan.instance_count(), 5);
    assert_eq!(plan.ttl, Duration::from_secs(7200));
    assert_eq!(plan.key, KeyPlan::Create);
    assert_eq!(
        plan.access,
        Access::Cidrs(vec!["198.51.100.7/32".parse().unwrap()])
    );
}

#[test]
fn worker_type_list_is_split_and_checked() {
    let mut f = flags();
    f.worker_type = "c7g.large, c6g.large,m7g.large".into();
    let plan = FleetPlan::from_flags(&f).unwrap();
    assert_eq!(
        plan.role(Role::Worker).instance_types,
        vec!["c7g.large", "c6g.large", "m7g.large"]
    );
    f.worker_type = "c7g.large,c7g.large".into();
    assert!(matches!(
        FleetPlan::from_flags(&f),
        Err(PlanError::DuplicateType(_))
    ));
    f.worker_type = "c7g.large,,".into();
    assert!(matches!(
        FleetPlan::from_flags(&f),
        Err(PlanError::InstanceType { .. })
    ));
}

#[test]
fn master_takes_one_type() {
    let mut f = flags();
    f.master_type = "t3.small,t3.medium".into();
    let err = FleetPlan::from_flags(&f).unwrap_err();
    assert!(err.to_string().starts_with("--master-type"), "{err}");
}

/// One change to otherwise valid flags.
type Edit = fn(&mut LaunchFlags);

#[test]
fn bad_values_are_refused_with_the_flag_named() {
    let cases: Vec<(Edit, &str)> = vec![
        (|f| f.fleet = "no spaces".into(), "invalid fleet name"),
        (|f| f.fleet = "x".repeat(33), "invalid fleet name"),
        (|f| f.workers = 0, "--workers 0"),
        (|f| f.workers = 1000, "--workers 1000"),
        (|f| f.worker_type = "large".into(), "--worker-type"),
        (|f| f.ami = Some("ubuntu".into()), "--ami"),
        (|f| f.max_price = Some("-1".into()), "--max-price"),
        (
            |f| f.allow_cidr = vec!["10.0.0.0/33".into()],
            "--allow-cidr",
        ),
        (
            |f| f.allow_cidr = vec!["example.com".into()],
            "--allow-cidr",
        ),
        // One grammar with loadtest: a bare number is seconds, so 2 is too short.
        (|f| f.ttl = "2".into(), "--ttl 2: must be between 1m and 7d"),
        (
            |f| f.ttl = "30s".into(),
            "--ttl 30s: must be between 1m and 7d",
        ),
        (|f| f.ttl = "8d".into(), "--ttl 8d"),
        (|f| f.wait_timeout = "soon".into(), "--wait-timeout"),
        (
            |f| f.key_file = Some("/x".into()),
            "--key-file needs --key-name",
        ),
    ];
    for (edit, expected) in cases {
        let mut f = flags();
        edit(&mut f);
        let err = FleetPlan::from_flags(&f).unwrap_err().to_string();
        assert!(err.contains(expected), "{err:?} lacks {expected:?}");
    }
}

#[test]
fn missing_key_file_is_named() {
    let mut f = flags();
    f.key_name = Some("mine".into());
    f.key_file = Some("/nonexistent/mine.pem".into());
    let err = FleetPlan::from_flags(&f).unwrap_err().to_string();
    assert_eq!(
        err,
        "--key-file /nonexistent/mine.pem: no such file; give the private key of key pair mine"
    );
}

#[test]
fn no_cidr_means_learning_the_caller_address() {
    let mut f = flags();
    f.allow_cidr.clear();
    let plan = FleetPlan::from_flags(&f).unwrap();
    assert_eq!(
        plan.access,
        Access::CallerAddress {
            url: DEFAULT_PUBLIC_IP_URL.into()
        }
    );
}

#[test]
fn durations_round_trip() {
    assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
    assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
    assert_eq!(parse_duration(""), None);
    // One grammar with loadtest's: a bare number is seconds, as in Locust.
    assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
    assert_eq!(parse_duration("5x"), None);
    assert_eq!(parse_duration("99999999999999999999d"), None);
    assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
    assert_eq!(format_duration(Duration::from_secs(0)), "0s");
    assert_eq!(format_duration(Duration::from_secs(90_061)), "1d1h1m1s");
}

#[test]
fn cidrs_are_normalised() {
    let cidr: Cidr = "203.0.113.77/24".parse().unwrap();
    assert_eq!(cidr.to_string(), "203.0.113.0/24");
    let cidr: Cidr = "2001:db8::1/64".parse().unwrap();
    assert_eq!(cidr.to_string(), "2001:db8::/64");
    assert!(cidr.is_ipv6());
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert_eq!(all.to_string(), "0.0.0.0/0");
    assert_eq!(
        Cidr::host("198.51.100.1".parse().unwrap()).to_string(),
        "198.51.100.1/32"
    );
}
