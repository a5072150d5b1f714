//! Small POSIX shell building blocks shared by the recipes: quoting, the
//! privilege wrapper, and the helper functions every step script starts
//! with (fetch a URL, stop a process by pid file, wait for a port).
//!
//! Scripts are plain `sh` (dash on Ubuntu, bash on Amazon Linux), so they
//! avoid bashisms.

/// Quotes `text` as one shell word (the one rule, shared with user data).
pub use crate::shell::quote;

/// How step scripts get root: directly when logged in as root, else through
/// `sudo -n` (EC2 images let their default user sudo without a password).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Logged in as root: scripts run under plain `sh -c`.
    Root,
    /// Through `sudo -n`: passwordless sudo is required, a prompt would hang.
    Sudo,
}

impl Privilege {
    /// The command that runs `script` as root with the helper prelude.
    pub fn wrap(self, script: &str) -> String {
        let full = format!("{PRELUDE}\n{script}");
        match self {
            Privilege::Root => format!("sh -c {}", quote(&full)),
            Privilege::Sudo => format!("sudo -n sh -c {}", quote(&full)),
        }
    }
}

/// Defined at the top of every step script.
///
/// - `fetch URL [USER:PASS [CAFILE]]`: the body of URL on stdout (curl, else
///   wget); an `https://` URL's certificate checked against CAFILE alone.
/// - `running PIDFILE WORD`: the pid in PIDFILE if that process runs and its
///   command line has WORD (a recycled pid does not count).
/// - `alive PID`: the process exists and is not a zombie (an unreaped
///   detached process still has its `/proc` entry).
/// - `stop_pidfile PIDFILE WORD`: TERM, wait up to 10 s, then KILL.
/// - `wait_http URL SECONDS [USER:PASS [CAFILE]]`: until URL answers, or fail.
const PRELUDE: &str = r#"set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
umask 022
fetch() {
    url=$1; auth=${2:-}; ca=${3:-}
    if command -v curl >/dev/null 2>&1; then
        set -- -fsS --max-time 5
        if [ -n "$auth" ]; then set -- "$@" -u "$auth"; fi
        if [ -n "$ca" ]; then set -- "$@" --cacert "$ca"; fi
        curl "$@" "$url"
    elif command -v wget >/dev/null 2>&1; then
        set -- -q -T 5 -O -
        if [ -n "$auth" ]; then set -- "$@" --auth-no-challenge --user="${auth%%:*}" --password="${auth#*:}"; fi
        if [ -n "$ca" ]; then set -- "$@" --ca-certificate="$ca"; fi
        wget "$@" "$url"
    else
        echo "neither curl nor wget is installed" >&2; return 127
    fi
}
running() {
    [ -f "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    case "$pid" in ''|*[!0-9]*) return 1 ;; esac
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$2" || return 1
    echo "$pid"
}
alive() {
    [ -r "/proc/$1/stat" ] || return 1
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
    [ -n "$state" ] && [ "$state" != Z ]
}
stop_pidfile() {
    if pid=$(running "$1" "$2"); then
        kill "$pid" 2>/dev/null || true
        i=0
        while alive "$pid" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; sleep 0.2; fi
        echo "stopped pid $pid"
    fi
    rm -f "$1"
}
wait_http() {
    i=0
    while [ $i -lt $(($2 * 4)) ]; do
        if fetch "$1" "${3:-}" "${4:-}" >/dev/null 2>&1; then return 0; fi
        sleep 0.25; i=$((i + 1))
    done
    echo "$1 did not answer within $2 s:" >&2
    fetch "$1" "${3:-}" "${4:-}" >/dev/null
    return 1
}"#;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::remote::{Local, Shell};

    #[test]
    fn quoting_keeps_plain_words_and_escapes_the_rest() {
        assert_eq!(quote("/opt/spotload/bin"), "/opt/spotload/bin");
        assert_eq!(quote("http://10.0.0.1:80"), "http://10.0.0.1:80");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[tokio::test]
    async fn wrapped_scripts_run_with_the_prelude_and_keep_quotes() {
        let script = "printf '%s|' \"it's\" \"$(echo a b)\"; command -v fetch running";
        let out = Local
            .run(&Privilege::Root.wrap(script), None)
            .await
            .unwrap();
        assert!(out.success(), "{out:?}");
        assert!(out.stdout.starts_with("it's|a b|"), "{}", out.stdout);
    }

    #[tokio::test]
    async fn stop_pidfile_stops_only_the_named_process() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("p.pid");
        let pf = quote(&pidfile.display().to_string());
        let start = format!("(setsid sh -c 'echo $$ > {pf}; exec sleep 30' >/dev/null 2>&1 </dev/null &); sleep 0.3; cat {pf}");
        let out = Local
            .run(&Privilege::Root.wrap(&start), None)
            .await
            .unwrap();
        let pid: u32 = out.stdout.trim().parse().unwrap();
        // A word the command line lacks: treated as not running.
        let wrong = format!("running {pf} nginx || echo no");
        let out = Local
            .run(&Privilege::Root.wrap(&wrong), None)
            .await
            .unwrap();
        assert_eq!(out.stdout.trim(), "no");
        let stop = format!("stop_pidfile {pf} sleep");
        let out = Local.run(&Privilege::Root.wrap(&stop), None).await.unwrap();
        assert_eq!(out.stdout.trim(), format!("stopped pid {pid}"));
        assert!(!pidfile.exists());
        let wrapped = Privilege::Root.wrap(&stop);
        let again = Local.run(&wrapped, Some(Arc::new(Vec::new()))).await;
        assert_eq!(again.unwrap().stdout, "");
    }
}
