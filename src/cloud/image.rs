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
