//! The flag groups parse, round-trip through `to_args`, and plan.

use super::*;
use clap::Parser;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    run: RunFlags,
    #[command(flatten)]
    spawn: SpawnFlags,
    #[command(flatten)]
    ramp: RampFlags,
    #[command(flatten)]
    secret: JoinSecretFlags,
    #[command(flatten)]
    tls: TargetTlsFlags,
    #[command(flatten)]
    verdicts: ThresholdFlags,
}

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
}

#[test]
fn forwarded_flags_parse_back_to_the_same_values() {
    for line in [
        "--headless --ramp 2:2:10 --step-time 3s -r 5 --refine --max-p95 0.25 --max-p99 300 --report-dir out --fail-ratio 0.05",
        "--headless --ramp-rate 100:100:500 -u 40 --step-time 3s --fail-ratio 0.05",
        "--headless -u 40 -r 40 -t 10s --arrival-rate 300",
        "-t 1m --arrival-rate 0.5",
        "--headless -u 50 -r 10 -t 1m30s --co-mitigation max",
        "-t 20s --join-secret-file /run/secret",
        "--ca-cert /etc/ssl/internal-ca.pem",
        "--accept-invalid-certs",
        "--headless --test-plan 2,2s;4,1m30s;0,1",
        "--test-plan 10,1h --class-picker",
        "--threshold p95<500ms --threshold error-rate<=1% --threshold-abort-delay 30s",
        "--threshold rps>=200 --no-threshold-abort",
        "",
    ] {
        let args: Vec<&str> = line.split_whitespace().collect();
        let first = parse(&args).expect(line);
        let mut forwarded = first.run.to_args(&first.spawn);
        forwarded.extend(first.ramp.to_args());
        forwarded.extend(first.secret.to_args());
        forwarded.extend(first.tls.to_args());
        forwarded.extend(first.verdicts.to_args());
        let again: Vec<&str> = forwarded.iter().map(String::as_str).collect();
        let second = parse(&again).expect("forwarded flags parse");
        assert_eq!(second.run, first.run, "{line} -> {forwarded:?}");
        assert_eq!(second.spawn, first.spawn, "{line} -> {forwarded:?}");
        assert_eq!(second.ramp, first.ramp, "{line} -> {forwarded:?}");
        assert_eq!(second.secret, first.secret, "{line} -> {forwarded:?}");
        assert_eq!(second.tls, first.tls, "{line} -> {forwarded:?}");
        assert_eq!(second.verdicts, first.verdicts, "{line} -> {forwarded:?}");
    }
}

#[test]
fn plans_say_which_flags_do_not_go_together() {
    let plan = |line: &str| {
        let args: Vec<&str> = line.split_whitespace().collect();
        let cli = parse(&args).expect(line);
        cli.run.plan(&cli.spawn, &cli.ramp, &cli.verdicts)
    };
    assert!(matches!(
        plan(""),
        Ok(RunPlan::Ui {
            run_time: None,
            test_plan: None
        })
    ));
    assert!(matches!(
        plan("--headless --test-plan 2,2s;0,1s"),
        Ok(RunPlan::Planned(_))
    ));
    assert!(matches!(
        plan("--test-plan 2,2s"),
        Ok(RunPlan::Ui {
            test_plan: Some(_),
            ..
        })
    ));
    let clash = plan("--headless --test-plan 2,2s -u 3 -t 5s -r 2").unwrap_err();
    assert!(
        clash.contains("drop -u/--users, -t/--run-time, -r/--spawn-rate"),
        "{clash}"
    );
    let clash = plan("--headless --test-plan 2,2s --ramp 1:1:3 --step-time 3s").unwrap_err();
    assert!(clash.contains("drop --ramp"), "{clash}");
    assert!(plan("--headless -u 2 --class-picker")
        .unwrap_err()
        .contains("--class-picker is for the web UI"));
    let bad = parse(&["--test-plan", "2,5 junk"]).unwrap_err();
    assert_eq!(bad.exit_code(), 2);
    assert!(bad.to_string().contains("\"2,5 junk\""), "{bad}");
    assert!(matches!(
        plan("--headless -u 3 -r 2"),
        Ok(RunPlan::Fixed { users: 3, .. })
    ));
    assert!(matches!(
        plan("--headless --ramp 1:1:3 --step-time 3s"),
        Ok(RunPlan::Ramp(_))
    ));
    assert!(plan("--headless").unwrap_err().contains("-u/--users"));
    assert!(plan("--ramp 1:1:3 --step-time 3s")
        .unwrap_err()
        .contains("--headless"));
    assert!(plan("--headless --ramp 1:1:3")
        .unwrap_err()
        .contains("--step-time"));
    assert!(plan("--headless --ramp 1:1:3 --step-time 3s -u 4")
        .unwrap_err()
        .contains("-u/--users"));
    assert!(plan("-u 4").unwrap_err().contains("--headless"));
    assert!(matches!(
        plan("--headless --ramp-rate 100:100:300 -u 40 --step-time 3s"),
        Ok(RunPlan::Ramp(ramp)) if ramp.pool == Some(40)
    ));
    assert!(plan("--headless --ramp-rate 100:100:300 --step-time 3s")
        .unwrap_err()
        .contains("--ramp-rate needs -u/--users"));
    let both = parse(&["--ramp", "1:1:2", "--ramp-rate", "1:1:2"]).unwrap_err();
    assert_eq!(both.exit_code(), 2, "one ramp or the other: {both}");
    assert!(
        plan("--headless --ramp 1:1:3 --step-time 3s --arrival-rate 10")
            .unwrap_err()
            .contains("--arrival-rate")
    );
    assert!(
        plan("--headless --ramp-rate 1:1:3 -u 4 --step-time 3s --arrival-rate 10")
            .unwrap_err()
            .contains("drop --arrival-rate")
    );
    assert!(plan("--headless --test-plan 2,2s --arrival-rate 10")
        .unwrap_err()
        .contains("--arrival-rate"));
    let bad = parse(&["--arrival-rate", "0"]).unwrap_err();
    assert!(bad.to_string().contains("arrival rate"), "{bad}");
    assert!(parse(&["--arrival-rate", "2e6"]).is_err());
    let bad = parse(&["--ramp-rate", "100:0:500"]).unwrap_err();
    assert!(bad.to_string().contains("iterations per second"), "{bad}");
    let lone = parse(&["--step-time", "3s"]).unwrap_err();
    assert_eq!(lone.exit_code(), 2, "a step time needs a ramp: {lone}");
    let bad = parse(&["--ramp", "10:0:5"]).unwrap_err();
    assert_eq!(bad.exit_code(), 2);
    let bad = parse(&["--co-mitigation", "sometimes"]).unwrap_err();
    assert!(bad.to_string().contains("average, maximum"), "{bad}");
    let bad = parse(&["--threshold", "p100<1s"]).unwrap_err();
    assert_eq!(bad.exit_code(), 2);
    assert!(bad.to_string().contains("p100<1s"), "{bad}");
    let lone = parse(&["--no-threshold-abort"]).unwrap_err();
    assert_eq!(lone.exit_code(), 2, "needs --threshold: {lone}");
    let both = parse(&[
        "--threshold",
        "p95<1s",
        "--no-threshold-abort",
        "--threshold-abort-delay",
        "5s",
    ])
    .unwrap_err();
    assert_eq!(both.exit_code(), 2, "{both}");
    let both = parse(&["--ca-cert", "ca.pem", "--accept-invalid-certs"]).unwrap_err();
    assert_eq!(both.exit_code(), 2, "one trust or the other: {both}");
}

#[derive(Parser, Debug)]
struct WorkerCli {
    #[command(flatten)]
    users: UserFlags,
}

#[test]
fn the_users_flags_round_trip_and_a_master_says_where_they_go() {
    for line in ["--wait 0.5:2 --shared-client", "--wait 0:0", ""] {
        let args: Vec<&str> = line.split_whitespace().collect();
        let first = WorkerCli::try_parse_from(std::iter::once("w").chain(args.iter().copied()))
            .expect(line);
        let forwarded = first.users.to_args();
        let again = WorkerCli::try_parse_from(
            std::iter::once("w").chain(forwarded.iter().map(String::as_str)),
        )
        .expect("forwarded flags parse");
        assert_eq!(again.users, first.users, "{line} -> {forwarded:?}");
    }
    assert!(parse_wait("2:1").is_err());
    assert!(worker_flag_hint("--wait=1:2")
        .is_some_and(|h| h.contains("--wait is an option of the workers")));
    assert!(worker_flag_hint("--csv").is_none());
}
