//! Long-running processes on a host: a systemd unit `spotload-NAME` where
//! systemd is the init (restarted on failure, started at boot), otherwise a
//! detached process (`setsid`) whose pid is in `BASE/run/NAME.pid`.
//! Either way its output goes to `BASE/log/NAME.log`.

use super::BASE;
use crate::remote::script::quote;

/// One service spotload runs on a host.
#[derive(Debug, Clone)]
pub struct Service {
    /// `master`, `worker`, `nginx`: unit `spotload-NAME`, pid and log files.
    pub name: &'static str,
    pub description: &'static str,
    /// The program and its arguments, each one word.
    pub argv: Vec<String>,
    /// Words the process's command line contains, so a recycled pid in a
    /// stale pid file is never taken for it.
    pub signature: String,
    /// systemd `Restart=`: `always` for workers, which quit with the master.
    pub restart: &'static str,
    /// The unit holds a secret (the web UI password): readable by root only.
    pub secret: bool,
    /// A line the program logs once it is ready (`joined the master`): the
    /// start waits for it, or for the process to end, up to [`READY_WAIT`].
    pub ready: &'static str,
}

/// How long a start waits for the service's ready line, in tenths of a
/// second. A service still running without it then counts as started
/// (the deploy's later checks judge it) and the step says so.
pub const READY_WAIT: u32 = 150;

impl Service {
    fn unit(&self) -> String {
        format!("spotload-{}", self.name)
    }

    pub fn pid_file(&self) -> String {
        format!("{BASE}/run/{}.pid", self.name)
    }

    pub fn log_file(&self) -> String {
        format!("{BASE}/log/{}.log", self.name)
    }

    /// Stops a previous instance however it was started (a host may have
    /// gained or lost systemd between deploys: containers, images).
    pub fn stop_script(&self) -> String {
        let unit = self.unit();
        format!(
            "if [ -d /run/systemd/system ] && systemctl cat {unit}.service >/dev/null 2>&1; then\n    \
                 systemctl stop {unit}.service && echo \"stopped {unit}.service\"\n\
             fi\n\
             stop_pidfile {pid} {sig}\n",
            pid = self.pid_file(),
            sig = quote(&self.signature),
        )
    }

    /// Starts the service and waits until it logs its ready line, failing
    /// with its log if it ends first.
    pub fn start_script(&self, systemd: bool) -> String {
        let mut script = format!("mkdir -p {BASE}/run {BASE}/log\n");
        if systemd {
            script.push_str(&self.systemd_start());
        } else {
            script.push_str(&self.detached_start());
        }
        script
    }

    /// The command a person would run, for error messages; the value
    /// after `--web-auth` is masked.
    pub fn command_line(&self, systemd: bool) -> String {
        if systemd {
            return format!("systemctl restart {}", self.unit());
        }
        let mut words = Vec::with_capacity(self.argv.len());
        for (i, word) in self.argv.iter().enumerate() {
            if i > 0 && self.argv[i - 1] == "--web-auth" {
                let user = word.split(':').next().unwrap_or_default();
                words.push(format!("{user}:***"));
            } else {
                words.push(word.clone());
            }
        }
        words.join(" ")
    }

    /// Waits while `alive` holds and the log lacks the ready line; sets
    /// `note` for the start's message when the line never came.
    fn wait_ready(&self, alive: &str) -> String {
        format!(
            "i=0; note=''\n\
             until grep -qF {ready} {log} 2>/dev/null; do\n    \
                 {alive} || break\n    \
                 if [ $i -ge {READY_WAIT} ]; then note=', not ready after {secs} s: see its log {log}'; break; fi\n    \
                 sleep 0.1; i=$((i + 1))\n\
             done\n",
            ready = quote(self.ready),
            log = self.log_file(),
            secs = READY_WAIT / 10,
        )
    }

    fn systemd_start(&self) -> String {
        let unit = self.unit();
        let path = format!("/etc/systemd/system/{unit}.service");
        let exec = self.argv.iter().map(|a| quote(a)).collect::<Vec<_>>();
        let mode = if self.secret { "600" } else { "644" };
        format!(
            "cat > {path} <<'SPOTLOAD_UNIT'\n\
             [Unit]\n\
             Description=spotload: {description}\n\
             Wants=network-online.target\n\
             After=network-online.target\n\n\
             [Service]\n\
             ExecStart={exec}\n\
             Restart={restart}\n\
             RestartSec=2\n\
             LimitNOFILE=1048576\n\
             StandardOutput=append:{log}\n\
             StandardError=inherit\n\n\
             [Install]\n\
             WantedBy=multi-user.target\n\
             SPOTLOAD_UNIT\n\
             chmod {mode} {path}\n\
             : > {log}\n\
             systemctl daemon-reload\n\
             systemctl enable {unit}.service >/dev/null 2>&1\n\
             systemctl restart {unit}.service\n\
             {wait}             if ! systemctl is-active --quiet {unit}.service; then\n    \
                 systemctl status --no-pager {unit}.service >&2\n    \
                 tail -n 30 {log} >&2\n    \
                 exit 1\n\
             fi\n\
             echo \"{unit}.service is active$note\"\n",
            wait = self.wait_ready(&format!("systemctl is-active --quiet {unit}.service")),
            description = self.description,
            exec = exec.join(" "),
            restart = self.restart,
            log = self.log_file(),
        )
    }

    fn detached_start(&self) -> String {
        let pid = self.pid_file();
        let log = self.log_file();
        let argv = self.argv.iter().map(|a| quote(a)).collect::<Vec<_>>();
        // The inner shell writes its own pid, then becomes the program.
        let inner = format!("echo $$ > {pid}; exec {}", argv.join(" "));
        format!(
            "ulimit -n 65536 2>/dev/null || true\n\
             (setsid sh -c {inner} > {log} 2>&1 < /dev/null &)\n\
             i=0\n\
             while [ ! -s {pid} ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done\n\
             {wait}             if pid=$(running {pid} {sig}); then\n    \
                 echo \"started pid $pid$note\"\n\
             else\n    \
                 echo \"{name} exited right after starting; its log {log}:\" >&2\n    \
                 tail -n 30 {log} >&2\n    \
                 exit 1\n\
             fi\n",
            inner = quote(&inner),
            sig = quote(&self.signature),
            wait = self.wait_ready(&format!(
                "running {pid} {} >/dev/null",
                quote(&self.signature)
            )),
            name = self.name,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::script::Privilege;
    use crate::remote::{Local, Shell};

    /// The detached path with BASE swapped for a temp dir: start, replace,
    /// stop, and a program that dies at once is reported with its log.
    #[tokio::test]
    async fn detached_service_starts_restarts_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().display().to_string();
        let local = |script: String| {
            let script = script.replace(BASE, &base);
            async move {
                Local
                    .run(&Privilege::Root.wrap(&script), None)
                    .await
                    .unwrap()
            }
        };
        let service = Service {
            name: "sleeper",
            description: "test",
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo sleeping; exec sleep 30".into(),
            ],
            signature: "sleep 30".into(),
            restart: "always",
            secret: false,
            ready: "sleeping",
        };
        let first = local(service.start_script(false)).await;
        assert!(first.success(), "{first:?}");
        let pid1 = first
            .stdout
            .trim()
            .strip_prefix("started pid ")
            .unwrap()
            .to_string();
        let stop = local(service.stop_script()).await;
        assert_eq!(
            stop.stdout.trim(),
            format!("stopped pid {pid1}"),
            "{stop:?}"
        );
        let second = local(service.start_script(false)).await;
        assert!(second.success(), "{second:?}");
        assert_ne!(second.stdout, first.stdout);
        let stop = local(service.stop_script()).await;
        assert!(stop.stdout.contains("stopped pid"), "{stop:?}");

        let dying = Service {
            argv: vec!["sh".into(), "-c".into(), "echo boom; exit 3".into()],
            signature: "boom".into(),
            ..service
        };
        let out = local(dying.start_script(false)).await;
        assert!(!out.success());
        assert!(out.stderr.contains("boom"), "{out:?}");
    }

    #[test]
    fn a_systemd_unit_is_written_enabled_and_checked() {
        let service = Service {
            name: "master",
            description: "loadtest master",
            argv: vec![format!("{BASE}/bin/loadtest"), "master".into()],
            signature: "loadtest master".into(),
            restart: "on-failure",
            secret: true,
            ready: "master listening",
        };
        let script = service.start_script(true);
        assert!(script.contains("ExecStart=/opt/spotload/bin/loadtest master\n"));
        assert!(script.contains("chmod 600 /etc/systemd/system/spotload-master.service"));
        assert!(script.contains("systemctl enable spotload-master.service"));
        assert!(script.contains("StandardOutput=append:/opt/spotload/log/master.log"));
    }
}
