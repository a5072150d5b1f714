//! Launch flags validated once into a [`FleetPlan`], before any I/O touches
//! the cloud: a plan that exists is one `launch` can carry out as written.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::{FleetName, Role};

/// Most workers one launch may ask for: a typo should not start a thousand.
pub const MAX_WORKERS: u32 = 200;
/// Longest self-destruct timer: a forgotten fleet must end within a week.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Where `launch` learns the caller's public address when no CIDR is given.
pub const DEFAULT_PUBLIC_IP_URL: &str = "https://checkip.amazonaws.com";

/// A flag value that can't make a fleet.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    /// `--fleet` breaks the naming rules of [`FleetName`].
    #[error(
        "invalid fleet name {0:?}: use up to 32 letters, digits, '-' or '_', \
         starting with a letter or digit"
    )]
    FleetName(String),
    /// `--workers` is 0 or above [`MAX_WORKERS`].
    #[error("--workers {0}: give between 1 and {MAX_WORKERS} workers")]
    Workers(u32),
    /// A type that is not `family.size`, or a comma list for the master or
    /// webserver, which get exactly one type.
    #[error("{flag} {value:?}: an instance type looks like t3.small or c7g.large")]
    InstanceType {
        /// `--worker-type`, `--master-type` or `--webserver-type`.
        flag: &'static str,
        /// The whole flag value as given.
        value: String,
    },
    /// `--worker-type` lists one type twice.
    #[error("--worker-type {0:?} names a type twice; list each type once")]
    DuplicateType(String),
    /// `--ami` is not an `ami-` id.
    #[error("--ami {0:?}: an AMI id looks like ami-0123456789abcdef0")]
    Ami(String),
    /// `--max-price` is not a positive number.
    #[error("--max-price {0:?}: give a price in USD per hour, e.g. 0.05")]
    MaxPrice(String),
    /// An `--allow-cidr` entry is not `ADDRESS/PREFIX`.
    #[error("--allow-cidr {0:?}: give an address range like 203.0.113.7/32 or 2001:db8::/64")]
    Cidr(String),
    /// A duration flag outside the duration grammar.
    #[error("{flag} {value:?}: give a duration like 90s, 15m, 2h or 1h30m")]
    Duration {
        /// `--ttl` or `--wait-timeout`.
        flag: &'static str,
        /// The value as given.
        value: String,
    },
    /// A duration flag out of its range (`--ttl`: 1m to 7d, `--wait-timeout`:
    /// 1s to 3h).
    #[error("{flag} {value}: must be between {min} and {max}")]
    DurationRange {
        /// `--ttl` or `--wait-timeout`.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// The shortest allowed, formatted.
        min: String,
        /// The longest allowed, formatted.
        max: String,
    },
    /// `--key-file` without `--key-name`: a key file alone names no key pair.
    #[error("--key-file needs --key-name: the EC2 key pair whose private key the file holds")]
    KeyFileWithoutName,
    /// `--key-file` does not name a file.
    #[error("--key-file {path}: {problem}; give the private key of key pair {key_name}")]
    KeyFile {
        /// The `--key-file` path.
        path: PathBuf,
        /// The `--key-name` it should be the private key of.
        key_name: String,
        /// What is wrong: "no such file", "is not a file", or the I/O error.
        problem: String,
    },
    /// `--key-name` is blank or longer than EC2's 255 characters.
    #[error("--key-name {0:?}: give the name of an existing EC2 key pair")]
    KeyName(String),
}

/// The raw launch flags, as the command line gives them.
#[derive(Debug, Clone)]
pub struct LaunchFlags {
    /// `--fleet`: the fleet name, not yet checked.
    pub fleet: String,
    /// `--workers`: how many worker instances.
    pub workers: u32,
    /// `--worker-type`: one instance type, or a comma list.
    pub worker_type: String,
    /// `--master-type`: one instance type.
    pub master_type: String,
    /// `--webserver-type`: one instance type.
    pub webserver_type: String,
    /// `--ami`; `None` picks the latest Amazon Linux 2023 per architecture.
    pub ami: Option<String>,
    /// `--key-name`: an existing EC2 key pair; `None` creates one.
    pub key_name: Option<String>,
    /// `--key-file`: the private key of `--key-name`.
    pub key_file: Option<PathBuf>,
    /// `--allow-cidr` values, each possibly a comma list; empty means this
    /// machine's public address.
    pub allow_cidr: Vec<String>,
    /// `--public-ip-url`: where that public address is learned.
    pub public_ip_url: String,
    /// `--max-price` in USD per instance-hour; `None` caps at on-demand.
    pub max_price: Option<String>,
    /// `--ttl`: the self-destruct timer, as a duration.
    pub ttl: String,
    /// `--wait-timeout`: how long launch waits for instances to run.
    pub wait_timeout: String,
}

/// How many instances of which types one role gets.
#[derive(Debug, Clone, PartialEq)]
pub struct RolePlan {
    /// The role these instances play.
    pub role: Role,
    /// Instances to launch: 1 for webserver and master, `--workers` for workers.
    pub count: u32,
    /// One type, or several for the worker fleet to choose among.
    pub instance_types: Vec<String>,
}

/// Which key pair instances accept.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyPlan {
    /// Create `spotload-<fleet>` and save its private key in the state dir.
    Create,
    /// Use an existing key pair; `private_key` is its key file, if given.
    Existing {
        /// The EC2 key pair name (`--key-name`).
        name: String,
        /// `--key-file`, recorded in the fleet file for deploy; without it, deploy
        /// needs its own `--key-file`.
        private_key: Option<PathBuf>,
    },
}

/// Who may reach ports 22, 80 and 8089.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// The `--allow-cidr` ranges.
    Cidrs(Vec<Cidr>),
    /// Learn this machine's public address from this URL at launch.
    CallerAddress {
        /// `--public-ip-url`: answers with the address as plain text.
        url: String,
    },
}

/// A fleet launch, fully validated.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetPlan {
    /// The fleet's name, checked.
    pub fleet: FleetName,
    /// Webserver, master and workers, in launch order.
    pub roles: Vec<RolePlan>,
    /// `None`: the latest Amazon Linux 2023 for each type's architecture.
    pub ami: Option<String>,
    /// The key pair to create or use.
    pub key: KeyPlan,
    /// Who may reach SSH, nginx and the web UI.
    pub access: Access,
    /// Spot price cap in USD per hour; `None` caps at the on-demand price.
    pub max_price: Option<String>,
    /// Self-destruct timer: each instance powers off (and so terminates) this
    /// long after boot; 1m to 7d.
    pub ttl: Duration,
    /// How long to wait for every instance to run before rolling back; 1s to 3h.
    pub wait_timeout: Duration,
}

impl RolePlan {
    /// The flag that chose this role's instance types.
    pub fn type_flag(&self) -> &'static str {
        type_flag(self.role)
    }
}

/// The flag that chooses `role`'s instance types.
pub fn type_flag(role: Role) -> &'static str {
    match role {
        Role::Webserver => "--webserver-type",
        Role::Master => "--master-type",
        Role::Worker => "--worker-type",
    }
}

impl FleetPlan {
    /// Checks every flag; the only I/O is looking at `--key-file`.
    pub fn from_flags(flags: &LaunchFlags) -> Result<FleetPlan, PlanError> {
        let fleet = FleetName::parse(&flags.fleet)?;
        if flags.workers == 0 || flags.workers > MAX_WORKERS {
            return Err(PlanError::Workers(flags.workers));
        }
        let roles = vec![
            RolePlan {
                role: Role::Webserver,
                count: 1,
                instance_types: instance_types("--webserver-type", &flags.webserver_type)?,
            },
            RolePlan {
                role: Role::Master,
                count: 1,
                instance_types: instance_types("--master-type", &flags.master_type)?,
            },
            RolePlan {
                role: Role::Worker,
                count: flags.workers,
                instance_types: instance_types("--worker-type", &flags.worker_type)?,
            },
        ];
        for single in &roles[..2] {
            if single.instance_types.len() != 1 {
                return Err(PlanError::InstanceType {
                    flag: single.type_flag(),
                    value: single.instance_types.join(","),
                });
            }
        }
        Ok(FleetPlan {
            fleet,
            roles,
            ami: flags.ami.as_deref().map(ami).transpose()?,
            key: key_plan(flags.key_name.as_deref(), flags.key_file.as_deref())?,
            access: access(&flags.allow_cidr, &flags.public_ip_url)?,
            max_price: flags.max_price.as_deref().map(max_price).transpose()?,
            ttl: bounded("--ttl", &flags.ttl, Duration::from_secs(60), MAX_TTL)?,
            wait_timeout: bounded(
                "--wait-timeout",
                &flags.wait_timeout,
                Duration::from_secs(1),
                Duration::from_secs(3 * 3600),
            )?,
        })
    }

    /// The plan for `role`.
    pub fn role(&self, role: Role) -> &RolePlan {
        // from_flags builds all three roles in Role order.
        &self.roles[role as usize]
    }

    /// How many instances the plan launches.
    pub fn instance_count(&self) -> u32 {
        self.roles.iter().map(|r| r.count).sum()
    }
}

fn instance_types(flag: &'static str, value: &str) -> Result<Vec<String>, PlanError> {
    let mut types: Vec<String> = Vec::new();
    for item in value.split(',').map(str::trim) {
        if !looks_like_instance_type(item) {
            return Err(PlanError::InstanceType {
                flag,
                value: value.to_string(),
            });
        }
        if types.iter().any(|t| t == item) {
            return Err(PlanError::DuplicateType(value.to_string()));
        }
        types.push(item.to_string());
    }
    Ok(types)
}

fn looks_like_instance_type(value: &str) -> bool {
    let ok = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    match value.split_once('.') {
        Some((family, size)) => ok(family) && ok(size) && value.len() <= 64,
        None => false,
    }
}

fn ami(value: &str) -> Result<String, PlanError> {
    let hex = value.strip_prefix("ami-").unwrap_or("");
    if hex.len() >= 8 && hex.len() <= 32 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(value.to_string())
    } else {
        Err(PlanError::Ami(value.to_string()))
    }
}

fn max_price(value: &str) -> Result<String, PlanError> {
    match value.parse::<f64>() {
        Ok(price) if price.is_finite() && price > 0.0 => Ok(value.to_string()),
        _ => Err(PlanError::MaxPrice(value.to_string())),
    }
}

fn key_plan(name: Option<&str>, file: Option<&std::path::Path>) -> Result<KeyPlan, PlanError> {
    let Some(name) = name else {
        return match file {
            Some(_) => Err(PlanError::KeyFileWithoutName),
            None => Ok(KeyPlan::Create),
        };
    };
    if name.trim().is_empty() || name.len() > 255 {
        return Err(PlanError::KeyName(name.to_string()));
    }
    if let Some(path) = file {
        let problem = match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => None,
            Ok(_) => Some("is not a file".to_string()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Some("no such file".to_string())
            }
            Err(err) => Some(err.to_string()),
        };
        if let Some(problem) = problem {
            return Err(PlanError::KeyFile {
                path: path.to_path_buf(),
                key_name: name.to_string(),
                problem,
            });
        }
    }
    Ok(KeyPlan::Existing {
        name: name.to_string(),
        private_key: file.map(std::path::Path::to_path_buf),
    })
}

fn access(cidrs: &[String], url: &str) -> Result<Access, PlanError> {
    let parsed = cidrs
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(Cidr::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    if parsed.is_empty() {
        Ok(Access::CallerAddress {
            url: url.to_string(),
        })
    } else {
        Ok(Access::Cidrs(parsed))
    }
}

fn bounded(
    flag: &'static str,
    value: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, PlanError> {
    let duration = parse_duration(value).ok_or_else(|| PlanError::Duration {
        flag,
        value: value.to_string(),
    })?;
    if duration < min || duration > max {
        return Err(PlanError::DurationRange {
            flag,
            value: value.to_string(),
            min: format_duration(min),
            max: format_duration(max),
        });
    }
    Ok(duration)
}

/// The one duration grammar (`90s`, `15m`, `1h30m`, `2d`; a bare number is
/// seconds), shared with `loadtest`.
pub fn parse_duration(value: &str) -> Option<Duration> {
    swarm::timespan::parse_timespan(value).ok()
}

pub use swarm::timespan::format_timespan as format_duration;

/// An IPv4 or IPv6 address range, host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The single address `addr`: /32 or /128.
    pub fn host(addr: IpAddr) -> Cidr {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr, prefix }
    }

    /// True for an IPv6 range: security group rules keep v4 and v6 apart.
    pub fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }
}

impl FromStr for Cidr {
    type Err = PlanError;
    fn from_str(value: &str) -> Result<Cidr, PlanError> {
        let bad = || PlanError::Cidr(value.to_string());
        let (addr, prefix) = value.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let addr = match addr {
            IpAddr::V4(v4) if prefix <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::from((u32::from(v4) & mask).to_be_bytes())
            }
            IpAddr::V6(v6) if prefix <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::from((u128::from(v6) & mask).to_be_bytes())
            }
            _ => return Err(bad()),
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
pub(crate) mod tests;
