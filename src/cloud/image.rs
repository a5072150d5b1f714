//! The AMI each instance type boots: `--ami` for every type, or else the
//! latest Amazon Linux 2023 for the type's architecture, read from the public
//! SSM parameter AWS keeps current.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{ArchitectureType, InstanceType};

use super::{CloudError, Ec2, FleetPlan};

/// Followed by `x86_64` or `arm64`.
const AL2023_PARAMETER: &str = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-";

/// Instance type → AMI id.
pub(crate) type Images = BTreeMap<String, String>;

impl Ec2 {
    /// An AMI for every instance type in the plan.
    pub(crate) async fn resolve_images(&self, plan: &FleetPlan) -> Result<Images, CloudError> {
        let types: BTreeSet<&String> = plan
            .roles
            .iter()
            .flat_map(|role| &role.instance_types)
            .collect();
        if let Some(ami) = &plan.ami {
            return Ok(types
                .into_iter()
                .map(|t| (t.clone(), ami.clone()))
                .collect());
        }
        let types: Vec<String> = types.into_iter().cloned().collect();
        let arches = self.architectures(&types).await?;
        check_one_architecture_per_role(plan, &arches)?;
        let mut by_arch: BTreeMap<&str, String> = BTreeMap::new();
        for arch in arches.values() {
            if !by_arch.contains_key(arch) {
                by_arch.insert(arch, self.latest_al2023(arch).await?);
            }
        }
        Ok(arches
            .iter()
            .map(|(t, arch)| (t.clone(), by_arch[arch].clone()))
            .collect())
    }

    /// `x86_64` or `arm64` for each type; an unknown type fails here, before
    /// anything is created.
    async fn architectures(
        &self,
        types: &[String],
    ) -> Result<BTreeMap<String, &'static str>, CloudError> {
        let action = format!("DescribeInstanceTypes ({})", types.join(", "));
        let answer = self
            .ec2
            .describe_instance_types()
            .set_instance_types(Some(
                types
                    .iter()
                    .map(|t| InstanceType::from(t.as_str()))
                    .collect(),
            ))
            .send()
            .await
            .map_err(|err| self.sdk_error(&action, err))?;
        let mut arches = BTreeMap::new();
        for info in answer.instance_types() {
            let Some(name) = info.instance_type() else {
                continue;
            };
            let supported = info
                .processor_info()
                .map(aws_sdk_ec2::types::ProcessorInfo::supported_architectures)
                .unwrap_or_default();
            let arch = if supported.contains(&ArchitectureType::X8664) {
                "x86_64"
            } else if supported.contains(&ArchitectureType::Arm64) {
                "arm64"
            } else {
                continue;
            };
            arches.insert(name.as_str().to_string(), arch);
        }
        match types.iter().find(|t| !arches.contains_key(*t)) {
            None => Ok(arches),
            Some(missing) => Err(CloudError::Unexpected {
                action,
                detail: format!(
                    "no x86_64 or arm64 architecture listed for {missing}; pick another type or pass --ami"
                ),
            }),
        }
    }

    async fn latest_al2023(&self, arch: &str) -> Result<String, CloudError> {
        let name = format!("{AL2023_PARAMETER}{arch}");
        let action = format!("SSM GetParameter {name}");
        let answer = self
            .ssm
            .get_parameter()
            .name(&name)
            .send()
            .await
            .map_err(|err| self.sdk_error(&action, err))?;
        answer
            .parameter()
            .and_then(|p| p.value())
            .map(str::to_string)
            .ok_or_else(|| CloudError::Unexpected {
                action,
                detail: "the parameter has no value; pass --ami".into(),
            })
    }
}

/// Refuses a role whose types mix x86_64 and arm64: its instances would boot
/// different AMIs and need different `loadtest` builds, and deploy would
/// refuse them only once they are billing.
fn check_one_architecture_per_role(
    plan: &FleetPlan,
    arches: &BTreeMap<String, &'static str>,
) -> Result<(), CloudError> {
    for role in &plan.roles {
        let mut by_arch: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for kind in &role.instance_types {
            if let Some(arch) = arches.get(kind) {
                by_arch.entry(arch).or_default().push(kind);
            }
        }
        if by_arch.len() > 1 {
            let detail: Vec<String> = by_arch
                .iter()
                .map(|(arch, kinds)| format!("{arch}: {}", kinds.join(" ")))
                .collect();
            return Err(CloudError::MixedArchitectures {
                flag: role.type_flag(),
                types: role.instance_types.join(","),
                detail: detail.join("; "),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::plan::{tests::flags, LaunchFlags};

    fn plan(worker_type: &str) -> FleetPlan {
        FleetPlan::from_flags(&LaunchFlags {
            fleet: "arch".into(),
            workers: 2,
            worker_type: worker_type.into(),
            ..flags()
        })
        .unwrap()
    }

    #[test]
    fn a_role_may_not_mix_architectures() {
        let arches: BTreeMap<String, &'static str> = [
            ("t3.small", "x86_64"),
            ("c5.large", "x86_64"),
            ("c7g.large", "arm64"),
        ]
        .into_iter()
        .map(|(t, a)| (t.to_string(), a))
        .collect();
        let err = check_one_architecture_per_role(&plan("c5.large,c7g.large"), &arches)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--worker-type c5.large,c7g.large mixes architectures (arm64: c7g.large; x86_64: c5.large)"), "{err}");
        // Roles may differ from each other; deploy checks master and workers.
        assert!(check_one_architecture_per_role(&plan("c7g.large"), &arches).is_ok());
    }
}
