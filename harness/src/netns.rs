//! Test hosts for SSH deploys: each a real OpenSSH sshd (Debian's
//! `openssh-server`) in its own network namespace, with its own address,
//! hostname, host key, authorized_keys and private directories.
//!
//! A [`Lan`] is a bridge in the root namespace with `10.231.K.1/24` (K free
//! on this machine), so the test reaches its hosts and they reach each
//! other. A [`NetHost`] is a namespace with one veth end on that bridge and
//! sshd started under `unshare --mount --uts`: it sees its own hostname, a
//! bind mount of its own temp dir on `/opt` (so `/opt/spotload` is per
//! host and the test can read it), and empty tmpfs on `/etc/systemd` and
//! `/var/log/nginx`, and a root home fresh from `/etc/skel` (this machine's
//! own `~/.bashrc` would run on every SSH command). No DNS anywhere: IP
//! addresses only.
//!
//! Everything is removed on drop, on success and on panic: the processes
//! left in each namespace (sshd, and what deploys started there), the
//! namespaces, the veths and the bridge. Needs root.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::process::{Process, TempDir};
use crate::wait::try_wait_until;

/// Subnets are 10.231.K.0/24.
const SUBNET_PREFIX: [u8; 2] = [10, 231];
/// How long sshd gets to log that it listens.
const SSHD_START: Duration = Duration::from_secs(20);

/// Runs a setup command; panics with its output when it fails.
pub fn sh(command: &str) -> String {
    let out = run(command);
    assert!(
        out.status.success(),
        "`{command}` failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command, whatever its outcome (cleanup).
fn run(command: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run sh for `{command}`: {e}"))
}

/// A bridge with a /24 of its own, the hosts on it, and optionally an
/// "operator" namespace for running spotload itself off the machine's
/// routes. Field order matters: hosts go before the bridge.
pub struct Lan {
    hosts: Vec<NetHost>,
    operator: Option<String>,
    forwarders: Vec<Forwarder>,
    bridge: String,
    subnet: u8,
    next_veth: AtomicUsize,
}

impl Lan {
    /// Creates the bridge on a free 10.231.K.0/24 with 10.231.K.1.
    #[expect(
        clippy::new_without_default,
        reason = "a Lan changes the machine's network: never make one implicitly"
    )]
    pub fn new() -> Lan {
        static PICK: Mutex<()> = Mutex::new(());
        let _guard = PICK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let uid = String::from_utf8_lossy(&run("id -u").stdout)
            .trim()
            .to_string();
        assert_eq!(
            uid, "0",
            "test hosts need root (network namespaces, mounts, sshd): run as root, like CI"
        );
        let _ = std::fs::create_dir_all("/run/sshd");
        let start = std::process::id() % 230;
        for offset in 0..230u32 {
            let k = 20 + (start + offset) % 230;
            let bridge = format!("slbr{k}");
            let taken = !run(&format!("ip -4 route show 10.231.{k}.0/24"))
                .stdout
                .is_empty()
                || run(&format!("ip link show {bridge}")).status.success();
            if taken {
                continue;
            }
            sh(&format!(
                "ip link add {bridge} type bridge && ip addr add 10.231.{k}.1/24 dev {bridge} && ip link set {bridge} up"
            ));
            return Lan {
                hosts: Vec::new(),
                operator: None,
                forwarders: Vec::new(),
                bridge,
                subnet: u8::try_from(k).unwrap_or_else(|_| unreachable!()),
                next_veth: AtomicUsize::new(0),
            };
        }
        panic!("no free 10.231.K.0/24 subnet for a test bridge");
    }

    /// `10.231.K.n`.
    pub fn address(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET_PREFIX[0], SUBNET_PREFIX[1], self.subnet, n)
    }

    /// The root namespace's address on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        self.address(1)
    }

    fn in_subnet(&self, address: Ipv4Addr) -> bool {
        let o = address.octets();
        o[..2] == SUBNET_PREFIX && o[2] == self.subnet
    }

    /// Plugs a new namespace into the bridge with `address` (a /24 in the
    /// subnet, else a /32 with a route to it from the root namespace) and
    /// an on-link default route, so it reaches every address on the bridge.
    fn plug(&self, ns: &str, address: Ipv4Addr) -> String {
        let i = self.next_veth.fetch_add(1, Ordering::Relaxed);
        let (k, br) = (self.subnet, &self.bridge);
        let (veth, peer) = (format!("sl{k}v{i}"), format!("sl{k}p{i}"));
        let prefix = if self.in_subnet(address) { 24 } else { 32 };
        sh(&format!(
            "ip netns add {ns} && \
             ip link add {veth} type veth peer name {peer} && \
             ip link set {peer} netns {ns} && \
             ip -n {ns} link set {peer} name eth0 && \
             ip -n {ns} addr add {address}/{prefix} dev eth0 && \
             ip -n {ns} link set lo up && ip -n {ns} link set eth0 up && \
             ip -n {ns} route add default dev eth0 && \
             ip link set {veth} master {br} && ip link set {veth} up"
        ));
        if prefix == 32 {
            sh(&format!("ip route add {address}/32 dev {br}"));
        }
        veth
    }

    /// Starts a host at `address` that accepts the given public keys for root.
    pub fn add_host(
        &mut self,
        hostname: &str,
        address: Ipv4Addr,
        authorized_keys: &str,
    ) -> &NetHost {
        let ns = format!("spotload-{}-{}-{hostname}", std::process::id(), self.subnet);
        let veth = self.plug(&ns, address);
        let host = NetHost::start(ns, veth, hostname, address, authorized_keys);
        self.hosts.push(host);
        self.hosts.last().unwrap_or_else(|| unreachable!())
    }

    /// A deploy's fleet on a new Lan: an ed25519 client key made at
    /// `work/id_ed25519`, then a webserver, a master and `workers` workers
    /// at `.11` on, each named `name(index, role)` and accepting that key
    /// for root, listed as `ADDRESS root KEY ROLE` lines in the inventory
    /// `work/hosts.txt`. Returns the Lan and the inventory's path.
    pub fn fleet(work: &Path, workers: u8, name: impl Fn(u8, &str) -> String) -> (Lan, PathBuf) {
        let key = work.join("id_ed25519");
        sh(&format!(
            "ssh-keygen -q -t ed25519 -N '' -f {}",
            key.display()
        ));
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap_or_default();
        let mut lan = Lan::new();
        let mut lines = String::new();
        for i in 0..workers + 2 {
            let role = match i {
                0 => "webserver",
                1 => "master",
                _ => "worker",
            };
            let address = lan.address(11 + i);
            lan.add_host(&name(i, role), address, &public);
            lines.push_str(&format!("{address} root {} {role}\n", key.display()));
        }
        let inventory = work.join("hosts.txt");
        std::fs::write(&inventory, lines)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", inventory.display()));
        (lan, inventory)
    }

    /// Every host started with [`Lan::add_host`], in the order they were added.
    pub fn hosts(&self) -> &[NetHost] {
        &self.hosts
    }

    /// The `index`th host added (0-based), mutable to change its host key
    /// or stop its sshd; panics when out of range.
    pub fn host_mut(&mut self, index: usize) -> &mut NetHost {
        &mut self.hosts[index]
    }

    /// A namespace at 10.231.K.2 whose only way out is the bridge: a
    /// spotload run there can reach the test hosts at any address, and
    /// nothing beyond this machine. Returns its name.
    pub fn operator(&mut self) -> String {
        if let Some(ns) = &self.operator {
            return ns.clone();
        }
        let ns = format!("spotload-{}-{}-operator", std::process::id(), self.subnet);
        self.plug(&ns, self.address(2));
        self.operator = Some(ns.clone());
        ns
    }

    /// Limits what the operator namespace sends to `mbit` Mbit/s (a token
    /// bucket on its link, `tc qdisc ... tbf`): the operator's uplink, as
    /// a deploy from a laptop or an office sees it. Creates the operator
    /// namespace when there is none yet.
    pub fn shape_operator(&mut self, mbit: u32) {
        let ns = self.operator();
        // 1 ms of traffic at the rate, at least 64 KiB (one GSO packet).
        let burst = (u64::from(mbit) * 1_000_000 / 8 / 1000).max(64 * 1024);
        sh(&format!(
            "ip netns exec {ns} tc qdisc replace dev eth0 root tbf rate {mbit}mbit burst {burst} latency 200ms"
        ));
    }

    /// Bytes the operator namespace has sent on its link so far (its
    /// `tx_bytes`); the difference over a run is what that run uploaded,
    /// headers included. Creates the operator namespace when there is none.
    pub fn operator_tx_bytes(&mut self) -> u64 {
        let ns = self.operator();
        let text = sh(&format!(
            "ip netns exec {ns} cat /sys/class/net/eth0/statistics/tx_bytes"
        ));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("tx_bytes of {ns} is not a number: {text:?}"))
    }

    /// Makes `127.0.0.1:port` in the root namespace reachable from the
    /// LAN at `10.231.K.1:<returned port>` (for moto, which listens on
    /// loopback only).
    pub fn forward_loopback(&mut self, port: u16) -> u16 {
        let forwarder = Forwarder::start(self.gateway(), SocketAddr::from(([127, 0, 0, 1], port)));
        let listen = forwarder.port;
        self.forwarders.push(forwarder);
        listen
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.hosts.clear();
        if let Some(ns) = self.operator.take() {
            kill_namespace_processes(&ns);
            let _ = run(&format!("ip netns del {ns}"));
        }
        for forwarder in &self.forwarders {
            forwarder.stop.store(true, Ordering::Relaxed);
        }
        let _ = run(&format!("ip link del {}", self.bridge));
    }
}

/// SIGKILLs every process in network namespace `ns`: they were all started
/// for the test (sshd, and the services deploys started there).
fn kill_namespace_processes(ns: &str) {
    // Best effort: what survives a second of SIGKILLs goes with the namespace.
    let _ = try_wait_until(Duration::from_secs(1), || {
        let pids = run(&format!("ip netns pids {ns}")).stdout;
        let pids = String::from_utf8_lossy(&pids).into_owned();
        if pids.trim().is_empty() {
            return Some(());
        }
        for pid in pids.split_whitespace() {
            if pid.chars().all(|c| c.is_ascii_digit()) {
                let _ = run(&format!("kill -9 {pid}"));
            }
        }
        None
    });
}

/// One test host: sshd in namespace `ns` with private mounts.
pub struct NetHost {
    // Before `dir`: sshd stops before its files go.
    sshd: Option<Process>,
    ns: String,
    veth: String,
    hostname: String,
    address: Ipv4Addr,
    dir: TempDir,
}

impl NetHost {
    fn start(ns: String, veth: String, hostname: &str, address: Ipv4Addr, keys: &str) -> NetHost {
        let dir = TempDir::new(&format!("host-{hostname}"));
        std::fs::create_dir_all(dir.path().join("opt")).expect("cannot create the host's /opt");
        std::fs::write(dir.path().join("authorized_keys"), keys)
            .expect("cannot write authorized_keys");
        let mut host = NetHost {
            sshd: None,
            ns,
            veth,
            hostname: hostname.to_string(),
            address,
            dir,
        };
        host.new_host_key();
        host.start_sshd();
        host
    }

    /// The host's IPv4 address on the LAN (10.231.K.N), where its sshd
    /// listens on port 22.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// The hostname the host's UTS namespace reports (`hostname` over ssh).
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// What the host sees as `/opt` (so `/opt/spotload` is `opt/spotload`).
    pub fn opt_dir(&self) -> PathBuf {
        self.dir.path().join("opt")
    }

    /// Replaces the host key and restarts sshd: the host now looks like a
    /// different machine (or an impostor) at the same address.
    pub fn change_host_key(&mut self) {
        if let Some(mut sshd) = self.sshd.take() {
            sshd.stop();
        }
        self.new_host_key();
        self.start_sshd();
    }

    fn new_host_key(&self) {
        let key = self.dir.path().join("ssh_host_ed25519_key");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        sh(&format!(
            "ssh-keygen -q -t ed25519 -N '' -C {} -f {}",
            self.hostname,
            key.display()
        ));
    }

    fn start_sshd(&mut self) {
        let d = self.dir.path();
        let config = d.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 0.0.0.0:22\nHostKey {d}/ssh_host_ed25519_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\n\
                 Subsystem sftp internal-sftp\nLogLevel VERBOSE\n",
                d = d.display()
            ),
        )
        .expect("cannot write sshd_config");
        // Private mounts first, then sshd becomes the process (its pid is ours).
        let mut private = format!(
            "hostname {} && mount --bind {}/opt /opt",
            self.hostname,
            d.display()
        );
        for dir in ["/etc/systemd", "/var/log/nginx", "/run/systemd"] {
            if Path::new(dir).is_dir() {
                private.push_str(&format!(" && mount -t tmpfs -o mode=755 tmpfs {dir}"));
            }
        }
        // root's home as on a fresh Debian host: sshd runs every command
        // through root's shell, and bash sources ~/.bashrc when started by
        // sshd, so this machine's own (pyenv set-up, cargo) would run on
        // every step and cost each host tens of milliseconds of CPU per step.
        private.push_str(
            " && mount -t tmpfs -o mode=700 tmpfs /root && { cp -a /etc/skel/. /root/ 2>/dev/null || true; }",
        );
        let script = format!(
            "{private} && exec /usr/sbin/sshd -D -e -f {}",
            config.display()
        );
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.ns,
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ]);
        let mut sshd = Process::spawn(&format!("sshd-{}", self.hostname), cmd, d);
        let listening = try_wait_until(SSHD_START, || {
            if sshd
                .stderr()
                .contains("Server listening on 0.0.0.0 port 22")
            {
                Some(true)
            } else {
                // An sshd that exited will never listen: stop waiting.
                (!sshd.is_running()).then_some(false)
            }
        });
        assert!(
            listening == Some(true),
            "sshd on {} did not start (running: {}):\n{}",
            self.hostname,
            sshd.is_running(),
            sshd.logs()
        );
        self.sshd = Some(sshd);
    }

    /// Runs `command` on the host: its network, mounts and hostname.
    pub fn exec(&self, command: &str) -> Output {
        let pid = self
            .sshd
            .as_ref()
            .map(super::process::Process::pid)
            .expect("sshd is not running");
        Command::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                "-m",
                "-u",
                "-n",
                "sh",
                "-c",
                command,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run nsenter: {e}"))
    }

    /// Pids of the processes in this host's namespace whose command line
    /// contains `word` (e.g. "loadtest master").
    pub fn processes(&self, word: &str) -> Vec<u32> {
        let pids = String::from_utf8_lossy(&run(&format!("ip netns pids {}", self.ns)).stdout)
            .into_owned();
        pids.split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|raw| {
                        let text = String::from_utf8_lossy(&raw).replace('\0', " ");
                        text.contains(word)
                    })
                    .unwrap_or(false)
            })
            .collect()
    }

    /// Mounts an empty tmpfs on `/usr/local/bin` for this host only (it
    /// comes before `/usr/bin` in every PATH) and writes `name` there with
    /// `script`: a way to stand in for a command on one host, e.g. a
    /// `curl` that damages what it fetches.
    pub fn shadow_command(&self, name: &str, script: &str) {
        let path = format!("/usr/local/bin/{name}");
        let out = self.exec(&format!(
            "(mountpoint -q /usr/local/bin || mount -t tmpfs -o mode=755 tmpfs /usr/local/bin) && \
             cat > {path} <<'SPOTLOAD_SHADOW'\n{script}\nSPOTLOAD_SHADOW\nchmod 755 {path}"
        ));
        assert!(
            out.status.success(),
            "cannot shadow {name} on {}: {}",
            self.hostname,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// sshd's log, for failure messages.
    pub fn sshd_logs(&self) -> String {
        self.sshd
            .as_ref()
            .map(super::process::Process::logs)
            .unwrap_or_default()
    }
}

impl Drop for NetHost {
    fn drop(&mut self) {
        kill_namespace_processes(&self.ns);
        if let Some(mut sshd) = self.sshd.take() {
            sshd.stop();
        }
        let _ = run(&format!("ip netns del {}", self.ns));
        let _ = run(&format!("ip link del {}", self.veth));
    }
}

/// A TCP forwarder from `listen` to `target`, one thread pair per
/// connection, until dropped.
struct Forwarder {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Forwarder {
    fn start(listen: Ipv4Addr, target: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind((listen, 0)).expect("cannot bind the forwarder");
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .expect("forwarder address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(target) {
                            pipe(client, server);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Forwarder { port, stop }
    }
}

fn pipe(client: TcpStream, server: TcpStream) {
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    };
    copy(client, server2);
    copy(server, client2);
}
