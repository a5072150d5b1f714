//! `spotload local`: the whole fleet as processes on this machine — a
//! target web server, a `loadtest master` with the UI and N `loadtest
//! worker`s. Every process it starts is stopped when it ends (Ctrl-C or
//! SIGTERM, a child failing, or spotload itself killed: children get
//! SIGTERM then). Each run has a join secret of its own ([`RunSecret`]):
//! only the workers started here can join its master.

mod children;
mod secret;
mod target;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use swarm::shutdown::Reason;

pub use children::Children;
pub use secret::RunSecret;
use swarm::cli::flags::JoinSecretFlags;
pub use target::{Target, TargetKind};

/// What to run locally.
#[derive(Debug, Clone)]
pub struct LocalPlan {
    /// How many `loadtest worker` processes to start.
    pub workers: usize,
    /// Target URL; `None` starts nginx (or the built-in server).
    pub target: Option<String>,
    /// The master's web UI and API port on 127.0.0.1.
    pub web_port: u16,
    /// The port workers join the master on, on 127.0.0.1.
    pub master_port: u16,
    /// The `loadtest` binary run as master and workers.
    pub loadtest: PathBuf,
    /// Extra arguments for `loadtest master` (e.g. `--headless -u 10 -t 30s`).
    pub master_args: Vec<String>,
    /// Extra arguments for every `loadtest worker` (e.g. `--wait 0.5:1`).
    pub worker_args: Vec<String>,
}

/// Finds the `loadtest` binary: next to this executable (a cargo build puts
/// both there), else on PATH.
pub fn find_loadtest() -> anyhow::Result<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("loadtest")));
    if let Some(path) = beside.filter(|p| p.is_file()) {
        return Ok(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("loadtest"))
        .find(|p| p.is_file());
    on_path.context("no `loadtest` binary next to spotload or on PATH: build it with `cargo build --release -p loadtest` or pass --loadtest-bin")
}

/// Runs the local fleet until Ctrl-C or until the master ends; returns the
/// master's exit code (a headless run's answer).
pub async fn run(plan: LocalPlan) -> anyhow::Result<i32> {
    let target = match &plan.target {
        Some(url) => Target::external(url),
        None => Target::start().await?,
    };
    // Removed (with its directory) when the run ends, after the children.
    let secret = RunSecret::create()?;
    let secret_flags = JoinSecretFlags::file(secret.file()).to_args();
    let mut children = Children::default();
    let mut args = master_args(&plan, &target.url);
    args.extend(secret_flags.iter().cloned());
    let master = children.spawn("master", &plan.loadtest, &args, Stdio::inherit())?;
    for i in 0..plan.workers {
        // This machine's fleet is not a spot fleet: no instance metadata to ask.
        let mut args: Vec<String> = [
            "worker",
            "--master-host",
            "127.0.0.1",
            "--master-port",
            &plan.master_port.to_string(),
            "--no-spot-watch",
        ]
        .map(String::from)
        .to_vec();
        args.extend(secret_flags.iter().cloned());
        args.extend(plan.worker_args.iter().cloned());
        children.spawn(
            &format!("worker {}", i + 1),
            &plan.loadtest,
            &args,
            // A worker's stdout only carries goose's "All N users launched."
            // lines, which would break up the master's tables.
            Stdio::null(),
        )?;
    }
    print_addresses(&plan, &target);
    let shutdown = swarm::shutdown::Shutdown::new();
    shutdown
        .watch_signals()
        .context("cannot watch for SIGINT and SIGTERM")?;
    // Whether the master's end told the workers to quit (then they leave
    // on their own): a run that ended by itself (0, or 1 after failures),
    // or Ctrl-C. After SIGTERM it only stops them, and a master that failed
    // may have told them nothing.
    let (code, told_to_quit) = tokio::select! {
        code = children.wait_for(master) => {
            let code = code.with_context(|| format!("waiting for the master ({})", plan.loadtest.display()))?;
            (code, code == 0 || code == 1)
        }
        () = shutdown.requested() => {
            let reason = shutdown.reason().unwrap_or(Reason::Interrupt);
            eprintln!("{}: stopping the master, the workers and the target", reason.describe());
            // The master ends the run, prints its summary and writes its
            // reports on the same signal; give it the chance.
            let signal = if reason == Reason::Terminate { libc::SIGTERM } else { libc::SIGINT };
            children.signal(master, signal);
            let code = children
                .wait_for_timeout(master, Duration::from_secs(15))
                .await
                .unwrap_or(i32::from(reason.exit_code()));
            (code, signal == libc::SIGINT)
        }
    };
    let own = if told_to_quit {
        Duration::from_secs(3)
    } else {
        Duration::ZERO
    };
    children.stop_all(own, Duration::from_secs(5)).await;
    target.stop().await;
    drop(secret);
    Ok(code)
}

fn master_args(plan: &LocalPlan, target_url: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        &plan.master_port.to_string(),
        "--web-host",
        "127.0.0.1",
        "--web-port",
        &plan.web_port.to_string(),
        "--host",
        target_url,
        "--expect-workers",
        &plan.workers.to_string(),
    ]
    .map(String::from)
    .to_vec();
    args.extend(plan.master_args.iter().cloned());
    args
}

fn print_addresses(plan: &LocalPlan, target: &Target) {
    println!("target:  {} ({})", target.url, target.kind.describe());
    if plan.master_args.iter().any(|a| a == "--headless") {
        println!(
            "master:  headless run, {} workers on 127.0.0.1:{}",
            plan.workers, plan.master_port
        );
    } else {
        println!("web UI:  http://127.0.0.1:{}", plan.web_port);
        println!(
            "master:  127.0.0.1:{} with {} workers",
            plan.master_port, plan.workers
        );
    }
    println!("Ctrl-C stops everything.");
}

/// Whether `path` looks runnable, for a clear error before spawning.
pub fn check_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).with_context(|| format!("loadtest binary {}", path.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        anyhow::bail!("{} is not an executable file", path.display());
    }
    Ok(())
}
