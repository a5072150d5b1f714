//! Steps that get the `loadtest` binary onto a host (see `remote::shipment`):
//! the master receives it from the operator (or stages the copy it already
//! runs) under [`SHIP_DIR`], named by its digest, and serves that directory
//! with `loadtest serve-file` on [`SHIP_PORT`]; every other host fetches it
//! from there. Every path checks the SHA-256 before the file becomes
//! `bin/loadtest.new`, which the role recipes move into place once the old
//! process has stopped (see [`install_script`]).

use std::time::Duration;

use super::{Step, BASE};
use crate::remote::shipment::{megabytes, Shipment};

/// Where the master keeps the files it serves: `<digest>` and `<digest>.zst`.
pub const SHIP_DIR: &str = "/opt/spotload/ship";
pub use crate::role::SHIP_PORT;
/// How long the master's file server may live if the deploy never stops it.
const SERVE_LIFETIME: &str = "10m";

const BIN: &str = "/opt/spotload/bin/loadtest";
const NEW_BIN: &str = "/opt/spotload/bin/loadtest.new";

/// `sha256sum`'s digest of file `$1` on stdout.
const DIGEST_OF: &str = r#"digest_of() { sha256sum < "$1" | cut -c1-64; }"#;

/// Removes what an earlier deploy left in [`SHIP_DIR`] beside this digest.
fn prune(digest: &str) -> String {
    format!(
        "for f in {SHIP_DIR}/*; do\n    \
             case \"$f\" in {SHIP_DIR}/{digest}|{SHIP_DIR}/{digest}.zst) ;; *) rm -f \"$f\" ;; esac\n\
         done"
    )
}

/// The master's upload from the operator: the zstd form when the host can
/// unpack it (`compressed`), else the binary itself. Checked against the
/// digest, kept under [`SHIP_DIR`] for the other hosts, copied to
/// `loadtest.new` and run once (`--version`).
pub fn receive_step(shipment: &Shipment, compressed: bool) -> Step {
    let digest = &shipment.digest;
    let unpack = if compressed {
        format!(
            "if ! zstd -q -d -c {digest}.in.part > {digest}.part; then\n    \
                 echo \"the upload is not valid zstd data (damaged in transit): deploy again\" >&2; exit 1\n\
             fi\n\
             mv -f {digest}.in.part {digest}.zst"
        )
    } else {
        format!("mv -f {digest}.in.part {digest}.part")
    };
    let script = format!(
        r#"{DIGEST_OF}
mkdir -p {BASE}/bin {BASE}/run {BASE}/log {SHIP_DIR}
cd {SHIP_DIR}
rm -f ./*.part
cat > {digest}.in.part
{unpack}
have=$(digest_of {digest}.part)
if [ "$have" != "{digest}" ]; then
    echo "received a file with sha256 $have, expected {digest}: the upload was damaged; deploy again" >&2
    exit 1
fi
chmod 755 {digest}.part && mv -f {digest}.part {digest}
{prune}
echo {digest} > {NEW_BIN}.sha256
rm -f {NEW_BIN}.part
ln {digest} {NEW_BIN}.part 2>/dev/null || cp {digest} {NEW_BIN}.part
mv -f {NEW_BIN}.part {NEW_BIN}
{NEW_BIN} --version"#,
        prune = prune(digest),
    );
    let (size, form) = if compressed {
        (shipment.compressed.len(), "zstd")
    } else {
        (shipment.binary.len(), "uncompressed: no zstd on the host")
    };
    let mut step = Step::new(
        format!(
            "upload loadtest ({}, {form}, sha256 {})",
            megabytes(size),
            shipment.short_digest()
        ),
        format!("cat > {SHIP_DIR}/{digest}.in.part; sha256sum"),
        script,
    )
    .limit(Duration::from_secs(10 * 60));
    step.input = Some(if compressed {
        shipment.compressed.clone()
    } else {
        shipment.binary.clone()
    });
    step
}

/// On a master that already runs the digest: make sure [`SHIP_DIR`] holds
/// it (and its zstd form, when the host has zstd) for the other hosts.
pub fn stage_step(digest: &str, compressed: bool) -> Step {
    let zst = if compressed {
        format!(
            "if [ ! -s {digest}.zst ]; then\n    \
                 zstd -q -3 -c {digest} > {digest}.zst.part && mv -f {digest}.zst.part {digest}.zst\n\
             fi"
        )
    } else {
        String::new()
    };
    let script = format!(
        r#"{DIGEST_OF}
mkdir -p {SHIP_DIR}
cd {SHIP_DIR}
if [ ! -f {digest} ] || [ "$(digest_of {digest})" != "{digest}" ]; then
    cp {BIN} {digest}.part && chmod 755 {digest}.part && mv -f {digest}.part {digest}
fi
{zst}
{prune}
echo "staged {digest} for the other hosts""#,
        prune = prune(digest),
    );
    Step::new(
        "stage loadtest for the other hosts",
        format!("cp {BIN} {SHIP_DIR}/{digest}"),
        script,
    )
}

fn serve_pid_file() -> String {
    format!("{BASE}/run/ship.pid")
}

/// Starts `loadtest serve-file` from the staged binary (detached, at most
/// [`SERVE_LIFETIME`]), replacing one an earlier deploy left, and waits
/// until it answers.
pub fn serve_start_step(digest: &str) -> Step {
    let pid = serve_pid_file();
    let log = format!("{BASE}/log/ship.log");
    let inner = format!(
        "echo $$ > {pid}; exec {SHIP_DIR}/{digest} serve-file --dir {SHIP_DIR} --port {SHIP_PORT} --lifetime {SERVE_LIFETIME}"
    );
    let script = format!(
        r#"mkdir -p {BASE}/run {BASE}/log
stop_pidfile {pid} serve-file >/dev/null
(setsid sh -c '{inner}' > {log} 2>&1 < /dev/null &)
i=0
while [ $i -lt 100 ]; do
    if fetch http://127.0.0.1:{SHIP_PORT}/ready >/dev/null 2>&1; then
        echo "serving loadtest on :{SHIP_PORT}"; exit 0
    fi
    if [ -s {pid} ] && ! running {pid} serve-file >/dev/null; then break; fi
    sleep 0.1; i=$((i + 1))
done
echo "the file server did not start (a loadtest built without serve-file? deploy one built from this checkout); its log {log}:" >&2
tail -n 20 {log} >&2
exit 1"#
    );
    Step::new(
        format!("serve loadtest to the other hosts on :{SHIP_PORT}"),
        format!("{SHIP_DIR}/{digest} serve-file --dir {SHIP_DIR} --port {SHIP_PORT}"),
        script,
    )
}

/// Stops the file server once every host has what it needs.
pub fn serve_stop_step() -> Step {
    Step::new(
        "stop serving loadtest",
        format!("kill $(cat {})", serve_pid_file()),
        format!("stop_pidfile {} serve-file", serve_pid_file()),
    )
}

/// A host other than the master: fetch from `base` (the zstd form when
/// `compressed`), check the digest, keep it as `loadtest.new`.
pub fn fetch_step(base: &str, shipment: &Shipment, compressed: bool) -> Step {
    let digest = &shipment.digest;
    let (url, download, size) = if compressed {
        (
            format!("{base}/{digest}.zst"),
            format!("{NEW_BIN}.zst.part"),
            shipment.compressed.len(),
        )
    } else {
        (
            format!("{base}/{digest}"),
            format!("{NEW_BIN}.part"),
            shipment.binary.len(),
        )
    };
    let unpack = if compressed {
        format!(
            "if ! zstd -q -d -c {download} > {NEW_BIN}.part; then\n    \
                 rm -f {download}\n    \
                 echo \"the file fetched from {url} is not valid zstd data (damaged on the way): deploy again\" >&2; exit 1\n\
             fi\n\
             rm -f {download}"
        )
    } else {
        String::new()
    };
    let script = format!(
        r#"{DIGEST_OF}
get() {{
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --connect-timeout 5 --max-time 300 --retry 2 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -T 30 -t 3 -O "$2" "$1"
    else
        echo "neither curl nor wget is installed: install curl" >&2; return 127
    fi
}}
mkdir -p {BASE}/bin {BASE}/run {BASE}/log
rm -f {NEW_BIN} {NEW_BIN}.part {NEW_BIN}.zst.part
if ! err=$(get {url} {download} 2>&1); then
    echo "cannot fetch {url}: $err" >&2
    echo "check that this host reaches the master's private address on port {SHIP_PORT} (on EC2 the fleet's security group must allow tcp {SHIP_PORT} from its own members), then deploy again" >&2
    exit 1
fi
{unpack}
have=$(digest_of {NEW_BIN}.part)
if [ "$have" != "{digest}" ]; then
    rm -f {NEW_BIN}.part
    echo "the file fetched from {url} has sha256 $have, expected {digest}: it was damaged on the way, or the master serves another build; deploy again" >&2
    exit 1
fi
echo {digest} > {NEW_BIN}.sha256
chmod 755 {NEW_BIN}.part && mv -f {NEW_BIN}.part {NEW_BIN}
{NEW_BIN} --version"#
    );
    let form = if compressed { "zstd" } else { "uncompressed" };
    Step::new(
        format!(
            "fetch loadtest from the master ({}, {form}, sha256 {})",
            megabytes(size),
            shipment.short_digest()
        ),
        format!("curl -o {download} {url}; sha256sum"),
        script,
    )
    .limit(Duration::from_secs(6 * 60))
}

/// Moves a checked `loadtest.new` into place (after the old process
/// stopped; a no-op when another role on the host already did), drops one
/// that is not this deploy's, and checks the installed binary's digest.
///
/// `loadtest.new` only ever appears after its digest was checked, with
/// that digest beside it (`loadtest.new.sha256`), which moves along to
/// `loadtest.sha256`: so nothing is hashed again here, except a binary
/// without its digest file (installed by an older spotload).
pub fn install_script(digest: &str) -> String {
    format!(
        r#"{DIGEST_OF}
if [ -f {NEW_BIN} ] && [ "$(cat {NEW_BIN}.sha256 2>/dev/null)" = "{digest}" ]; then
    mv -f {NEW_BIN} {BIN} && mv -f {NEW_BIN}.sha256 {BIN}.sha256
fi
rm -f {NEW_BIN} {NEW_BIN}.sha256
[ -x {BIN} ] || {{ echo "{BIN} is missing" >&2; exit 1; }}
if [ "$(cat {BIN}.sha256 2>/dev/null)" != "{digest}" ]; then
    have=$(digest_of {BIN})
    if [ "$have" != "{digest}" ]; then
        echo "{BIN} has sha256 $have, not this deploy's {digest}: deploy again" >&2; exit 1
    fi
    echo {digest} > {BIN}.sha256
fi"#
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::remote::script::Privilege;
    use crate::remote::{Local, Shell};

    fn input_len(step: &Step) -> Option<usize> {
        step.input.as_ref().map(|b| b.len())
    }

    fn shipment() -> Shipment {
        let padding = "# padding\n".repeat(100);
        Shipment::new(format!("#!/bin/sh\necho loadtest 9.9\nexit 0\n{padding}").into_bytes())
            .unwrap()
    }

    #[test]
    fn the_upload_is_the_compressed_form_when_the_host_has_zstd() {
        let s = shipment();
        let zst = receive_step(&s, true);
        assert_eq!(input_len(&zst), Some(s.compressed.len()));
        assert!(zst.name.contains("zstd"), "{}", zst.name);
        assert!(zst.script.contains("zstd -q -d -c"));
        let raw = receive_step(&s, false);
        assert_eq!(input_len(&raw), Some(s.binary.len()));
        assert!(!raw.script.contains("zstd -q -d"));
    }

    /// The receive, install and fetch scripts on this machine, with BASE
    /// swapped for a temp dir: a good upload lands, a damaged one is named.
    #[tokio::test]
    async fn receive_checks_the_digest_and_install_moves_only_this_deploy() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().display().to_string();
        let run = |script: String, input: Option<Arc<Vec<u8>>>| {
            let script = script.replace(BASE, &base);
            async move {
                Local
                    .run(&Privilege::Root.wrap(&script), input)
                    .await
                    .unwrap()
            }
        };
        let s = shipment();
        let compressed = Local.run("command -v zstd", None).await.unwrap().success();
        let step = receive_step(&s, compressed);
        let out = run(step.script.clone(), step.input.clone()).await;
        assert!(out.success(), "{out:?}");
        assert_eq!(out.stdout.trim(), "loadtest 9.9");
        let staged = dir.path().join(format!("ship/{}", s.digest));
        assert_eq!(std::fs::read(&staged).unwrap(), *s.binary);
        let out = run(install_script(&s.digest), None).await;
        assert!(out.success(), "{out:?}");
        assert!(dir.path().join("bin/loadtest").exists());
        assert!(!dir.path().join("bin/loadtest.new").exists());

        let mut damaged = (*s.binary).clone();
        damaged[20] ^= 1;
        let step = receive_step(&s, false);
        let out = run(step.script.clone(), Some(Arc::new(damaged))).await;
        assert!(!out.success());
        assert!(
            out.stderr.contains(&format!("expected {}", s.digest)),
            "{out:?}"
        );

        // A leftover loadtest.new of another build is dropped, not installed.
        std::fs::write(dir.path().join("bin/loadtest.new"), "other").unwrap();
        let out = run(install_script(&s.digest), None).await;
        assert!(out.success(), "{out:?}");
        assert!(!dir.path().join("bin/loadtest.new").exists());
        let out = run(install_script(&"0".repeat(64)), None).await;
        assert!(!out.success());
        assert!(out.stderr.contains("not this deploy's"), "{out:?}");

        // Fetching from a file:// base, which curl reads like a server.
        let ship = format!("file://{}", dir.path().join("ship").display());
        let step = fetch_step(&ship, &s, false);
        std::fs::remove_file(dir.path().join("bin/loadtest")).unwrap();
        let out = run(step.script.clone(), None).await;
        assert!(out.success(), "{out:?}");
        std::fs::write(&staged, "tampered").unwrap();
        let out = run(step.script.clone(), None).await;
        assert!(!out.success());
        assert!(out.stderr.contains("damaged on the way"), "{out:?}");
    }
}
