//! The self-destruct's shared vocabulary: when an instance powers off
//! ([`Expiry`], the tag [`TAG_EXPIRES_AT`] holding it), the arming script
//! (`expiry/spotload-expiry.sh`, [`ARMING_SCRIPT`]) and the shell that
//! installs and runs it ([`install_script`], with [`ArmSettings`]).
//!
//! Both sides use it from here, so neither depends on the other:
//! [`crate::cloud`] tags instances at launch, puts [`install_script`] in
//! their user data, and moves or reads the tag (`extend`, `status`);
//! [`crate::remote`]'s deploy step runs the same [`install_script`] over
//! SSH and checks what it armed. Installed as [`ARMING_PATH`], the script
//! reads the tag, saves it, and powers off once now ≥ expiry; a systemd
//! timer ([`TIMER_UNIT`]) runs it at boot and every minute, a watch loop
//! ([`WATCH_PID_FILE`]) where systemd is absent.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_types::date_time::{DateTime, Format};
use swarm::timespan::format_timespan;

use crate::shell::quote;

/// The tag holding when an instance powers off, e.g. `2025-06-01T14:30:00Z`.
pub const TAG_EXPIRES_AT: &str = "spotload:expires-at";
/// The arming script, as installed on every instance.
pub const ARMING_SCRIPT: &str = include_str!("expiry/spotload-expiry.sh");
/// Where spotload keeps the self-destruct on a host: the script, its
/// `config`, and the state it saves (`expires-at`, `source`,
/// `powered-off-at`).
pub const EXPIRY_DIR: &str = "/opt/spotload/expiry";
/// The installed arming script.
pub const ARMING_PATH: &str = "/opt/spotload/expiry/spotload-expiry";
/// The watch loop's pid file where systemd is absent.
pub const WATCH_PID_FILE: &str = "/opt/spotload/run/expiry.pid";
/// The systemd timer that runs the script at boot and every minute.
pub const TIMER_UNIT: &str = "spotload-expiry.timer";

/// When an instance powers off: whole seconds since the Unix epoch, written
/// as RFC 3339 UTC to the second (`2025-06-01T14:30:00Z`), the one form the
/// tag holds and the arming script reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiry(i64);

impl Expiry {
    /// `ttl` from `now` (Unix seconds).
    pub fn after(now: i64, ttl: Duration) -> Expiry {
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        Expiry(now.saturating_add(ttl))
    }

    /// `ttl` from this moment.
    pub fn from_now(ttl: Duration) -> Expiry {
        Expiry::after(unix_now(), ttl)
    }

    /// The time at these Unix seconds.
    pub fn at(unix: i64) -> Expiry {
        Expiry(unix)
    }

    /// Reads the tag's form, `YYYY-MM-DDTHH:MM:SSZ`; anything else (an
    /// offset, fractions) is refused, as the arming script refuses it.
    pub fn parse(text: &str) -> Option<Expiry> {
        let bytes = text.as_bytes();
        let shape = bytes.len() == 20
            && bytes.iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'-',
                10 => *b == b'T',
                13 | 16 => *b == b':',
                19 => *b == b'Z',
                _ => b.is_ascii_digit(),
            });
        if !shape {
            return None;
        }
        DateTime::from_str(text, Format::DateTime)
            .ok()
            .map(|t| Expiry(t.secs()))
    }

    /// Unix seconds.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// Seconds from `now` until the expiry; negative once it has passed.
    pub fn seconds_left(self, now: i64) -> i64 {
        self.0.saturating_sub(now)
    }

    /// `in 1h59m`, `now`, or `passed 3m ago`, for people.
    pub fn left_text(self, now: i64) -> String {
        let left = self.seconds_left(now);
        let whole = |secs: i64| {
            let secs = secs.unsigned_abs();
            // Minutes are enough past the first one.
            let shown = if secs < 60 { secs } else { secs - secs % 60 };
            format_timespan(Duration::from_secs(shown))
        };
        match left {
            0 => "now".into(),
            l if l > 0 => format!("in {}", whole(l)),
            l => format!("passed {} ago", whole(l)),
        }
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DateTime::from_secs(self.0).fmt(Format::DateTime) {
            Ok(text) => f.write_str(&text),
            Err(_) => write!(f, "@{}", self.0),
        }
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// How the arming script behaves on a host, written to its `config`.
/// Every field's default is what an EC2 instance needs; tests point them
/// at a stub.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArmSettings {
    /// Instance metadata base URL [`http://169.254.169.254`]; `off` never
    /// asks it.
    pub imds_endpoint: Option<String>,
    /// A command run instead of powering off (it sees the expiry in
    /// `SPOTLOAD_EXPIRY`).
    pub poweroff_command: Option<String>,
    /// The watch loop's interval where systemd is absent [60].
    pub watch_seconds: Option<u32>,
}

impl ArmSettings {
    fn config(&self) -> String {
        let mut config =
            String::from("# Written by spotload; SPOTLOAD_* environment variables override it.\n");
        if let Some(url) = &self.imds_endpoint {
            config.push_str(&format!("imds_endpoint={}\n", quote(url)));
        }
        if let Some(command) = &self.poweroff_command {
            config.push_str(&format!("poweroff_cmd={}\n", quote(command)));
        }
        if let Some(seconds) = self.watch_seconds {
            config.push_str(&format!("watch_seconds={seconds}\n"));
        }
        config
    }
}

const SERVICE_UNIT: &str = "[Unit]
Description=spotload: power off at the instance's spotload:expires-at tag
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/opt/spotload/expiry/spotload-expiry check
";

const TIMER_UNIT_TEXT: &str = "[Unit]
Description=spotload: check the self-destruct at boot and every minute

[Timer]
OnBootSec=10s
OnActiveSec=5s
OnUnitActiveSec=60s
AccuracySec=5s

[Install]
WantedBy=timers.target
";

/// Installs the arming script with `settings`, starts what re-runs it (the
/// systemd timer, else a watch loop), then runs one check, with `seed` as
/// the expiry to use when the tag cannot be read. POSIX sh, root, no
/// helpers: user data and deploy both run it. Its status is the check's.
pub fn install_script(settings: &ArmSettings, seed: Option<Expiry>) -> String {
    let seed = seed.map_or(String::new(), |s| format!("SPOTLOAD_EXPIRES_AT={s} "));
    format!(
        "mkdir -p {EXPIRY_DIR} /opt/spotload/run /opt/spotload/log\n\
         cat > {ARMING_PATH}.new <<'SPOTLOAD_EXPIRY_SCRIPT'\n\
         {ARMING_SCRIPT}\
         SPOTLOAD_EXPIRY_SCRIPT\n\
         chmod 755 {ARMING_PATH}.new && mv -f {ARMING_PATH}.new {ARMING_PATH}\n\
         cat > {EXPIRY_DIR}/config <<'SPOTLOAD_EXPIRY_CONFIG'\n\
         {config}\
         SPOTLOAD_EXPIRY_CONFIG\n\
         if [ -d /run/systemd/system ]; then\n\
         cat > /etc/systemd/system/spotload-expiry.service <<'SPOTLOAD_UNIT'\n\
         {SERVICE_UNIT}\
         SPOTLOAD_UNIT\n\
         cat > /etc/systemd/system/{TIMER_UNIT} <<'SPOTLOAD_UNIT'\n\
         {TIMER_UNIT_TEXT}\
         SPOTLOAD_UNIT\n\
         \x20   systemctl daemon-reload\n\
         \x20   systemctl enable {TIMER_UNIT} >/dev/null 2>&1\n\
         \x20   systemctl restart {TIMER_UNIT}\n\
         else\n\
         \x20   # No systemd: a watch loop, until the next reboot.\n\
         \x20   if [ -f {WATCH_PID_FILE} ]; then\n\
         \x20       old=$(cat {WATCH_PID_FILE} 2>/dev/null || true)\n\
         \x20       case \"$old\" in ''|*[!0-9]*) ;; *)\n\
         \x20           if tr '\\0' ' ' < /proc/$old/cmdline 2>/dev/null | grep -q 'spotload-expiry watch'; then kill $old; fi ;;\n\
         \x20       esac\n\
         \x20       rm -f {WATCH_PID_FILE}\n\
         \x20   fi\n\
         \x20   (setsid sh -c 'echo $$ > {WATCH_PID_FILE}; exec {ARMING_PATH} watch' >> /opt/spotload/log/expiry.log 2>&1 < /dev/null &)\n\
         fi\n\
         {seed}{ARMING_PATH} check\n",
        config = settings.config(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_reads_and_writes_the_tag_form_only() {
        let expiry = Expiry::parse("2025-06-01T14:30:00Z").unwrap();
        assert_eq!(expiry.unix(), 1_748_788_200);
        assert_eq!(expiry.to_string(), "2025-06-01T14:30:00Z");
        assert_eq!(Expiry::at(0).to_string(), "1970-01-01T00:00:00Z");
        for bad in [
            "2025-06-01T14:30:00+00:00",
            "2025-06-01T14:30:00.5Z",
            "2025-06-01 14:30:00Z",
            "2025-13-01T14:30:00Z",
            "soon",
            "",
        ] {
            assert_eq!(Expiry::parse(bad), None, "{bad}");
        }
        assert_eq!(
            Expiry::after(1000, Duration::from_secs(7200)),
            Expiry::at(8200)
        );
    }

    #[test]
    fn time_left_reads_like_the_uptime() {
        let expiry = Expiry::at(10_000);
        assert_eq!(expiry.left_text(10_000 - 3725), "in 1h2m");
        assert_eq!(expiry.left_text(10_000 - 42), "in 42s");
        assert_eq!(expiry.left_text(10_000), "now");
        assert_eq!(expiry.left_text(10_000 + 180), "passed 3m ago");
        assert_eq!(expiry.seconds_left(10_500), -500);
    }

    #[test]
    fn settings_are_quoted_into_the_config() {
        let settings = ArmSettings {
            imds_endpoint: Some("http://10.0.0.1:8080".into()),
            poweroff_command: Some("echo \"it's time\" > /tmp/x".into()),
            watch_seconds: Some(5),
        };
        let config = settings.config();
        assert!(config.contains("imds_endpoint=http://10.0.0.1:8080\n"));
        assert!(config.contains("poweroff_cmd='echo \"it'\\''s time\" > /tmp/x'\n"));
        assert!(config.contains("watch_seconds=5\n"));
        assert!(!install_script(&settings, None).contains("SPOTLOAD_EXPIRES_AT="));
    }
}
