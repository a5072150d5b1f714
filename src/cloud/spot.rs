//! The requests that start spot instances: RunInstances with spot market
//! options for a role with one instance type, and an instant EC2 Fleet with
//! price-capacity-optimized allocation for a worker-type list. The fleet
//! gets one override per (type, default subnet) whose zone offers the type
//! (DescribeInstanceTypeOfferings), so capacity in any zone counts, and a
//! type offered nowhere is refused before the launch template exists.
//!
//! Every instance gets shutdown behaviour `terminate` and the self-destruct
//! boot script, and is tagged with the fleet and its role at launch (tags in
//! the request, so no instance exists untagged even for a moment).

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, Filter, FleetLaunchTemplateConfigRequest,
    FleetLaunchTemplateOverridesRequest, FleetLaunchTemplateSpecificationRequest, FleetType,
    InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceType,
    LaunchTemplateTagSpecificationRequest, LocationType, MarketType, RequestLaunchTemplateData,
    ResourceType, ShutdownBehavior, SpotAllocationStrategy, SpotInstanceType, SpotMarketOptions,
    SpotOptionsRequest, TargetCapacitySpecificationRequest,
};

use super::access::{tagging, Subnet};
use super::error::shortfall_fix;
use super::image::Images;
use super::plan::RolePlan;
use super::{userdata, CloudError, Ec2, FleetName, FleetPlan, Role};

/// What every instance of the fleet shares, whatever its role.
pub(crate) struct Shared<'a> {
    pub plan: &'a FleetPlan,
    pub images: &'a Images,
    pub group: &'a str,
    pub key_name: &'a str,
    /// The default VPC's default subnets, one per zone: a multi-type role
    /// gets one fleet override per (type, subnet) whose zone offers the type.
    pub subnets: &'a [Subnet],
    /// When every instance powers off: its `spotload:expires-at` tag.
    pub expires_at: crate::expiry::Expiry,
}

/// What an instant EC2 Fleet launched.
pub(crate) struct FleetLaunch {
    /// The fleet's id (`fleet-...`): destroy deletes it with the instances.
    pub fleet_id: Option<String>,
    /// The instances it launched.
    pub ids: Vec<String>,
    /// Why it launched fewer than asked, if it did.
    pub shortfall: Option<CloudError>,
}

/// EC2 takes at most this many values in one filter.
const FILTER_VALUES_MAX: usize = 100;

/// Resource kinds tagged on each instance launch.
const INSTANCE_RESOURCES: [ResourceType; 3] = [
    ResourceType::Instance,
    ResourceType::Volume,
    ResourceType::SpotInstancesRequest,
];

impl Ec2 {
    /// RunInstances for a role with one instance type; returns the new ids.
    pub(crate) async fn run_spot(
        &self,
        shared: &Shared<'_>,
        role: &RolePlan,
    ) -> Result<Vec<String>, CloudError> {
        let plan = shared.plan;
        let instance_type = &role.instance_types[0];
        let image = image_for(shared.images, instance_type)?;
        let count = i32::try_from(role.count).unwrap_or(i32::MAX);
        let action = format!(
            "RunInstances ({} × {instance_type} {}, {image})",
            role.count, role.role
        );
        let mut request = self
            .ec2
            .run_instances()
            .image_id(image)
            .instance_type(InstanceType::from(instance_type.as_str()))
            .min_count(count)
            .max_count(count)
            .key_name(shared.key_name)
            .security_group_ids(shared.group)
            .instance_market_options(market_options(plan.max_price.as_deref()))
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
            .user_data(userdata::encoded(&plan.fleet, shared.expires_at, plan.ttl))
            .metadata_options(userdata::metadata_options())
            .client_token(client_token(&plan.fleet, role.role));
        for kind in INSTANCE_RESOURCES {
            let tags = tagging(kind, &plan.fleet, Some(role.role));
            request = request.tag_specifications(userdata::with_expiry(tags, shared.expires_at));
        }
        let answer = request
            .send()
            .await
            .map_err(|err| self.role_sdk_error(role.role, &action, err))?;
        Ok(answer
            .instances()
            .iter()
            .filter_map(|i| i.instance_id())
            .map(str::to_string)
            .collect())
    }

    /// A launch template carrying everything but the type and image, which
    /// the fleet's overrides choose; returns the template id.
    pub(crate) async fn create_worker_template(
        &self,
        shared: &Shared<'_>,
        role: Role,
    ) -> Result<String, CloudError> {
        let plan = shared.plan;
        let name = format!("{}-{role}", plan.fleet.resource_name());
        let mut data = RequestLaunchTemplateData::builder()
            .key_name(shared.key_name)
            .security_group_ids(shared.group)
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
            .user_data(userdata::encoded(&plan.fleet, shared.expires_at, plan.ttl))
            .metadata_options(userdata::template_metadata_options());
        for kind in INSTANCE_RESOURCES {
            let tags = tagging(kind.clone(), &plan.fleet, Some(role));
            let tags = userdata::with_expiry(tags, shared.expires_at);
            data = data.tag_specifications(
                LaunchTemplateTagSpecificationRequest::builder()
                    .resource_type(kind)
                    .set_tags(Some(tags.tags().to_vec()))
                    .build(),
            );
        }
        let answer = self
            .ec2
            .create_launch_template()
            .launch_template_name(&name)
            .launch_template_data(data.build())
            .tag_specifications(tagging(ResourceType::LaunchTemplate, &plan.fleet, None))
            .send()
            .await
            .map_err(|err| {
                self.role_sdk_error(role, format!("CreateLaunchTemplate ({name})"), err)
            })?;
        answer
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .map(str::to_string)
            .ok_or_else(|| CloudError::Unexpected {
                action: format!("CreateLaunchTemplate ({name})"),
                detail: "the answer holds no template id".into(),
            })
    }

    /// Which of `subnets` may host each of `types`: the subnets whose zone
    /// offers the type (DescribeInstanceTypeOfferings by availability zone).
    /// A type no zone offers is refused, naming `flag`.
    pub(crate) async fn placements(
        &self,
        flag: &'static str,
        types: &[String],
        subnets: &[Subnet],
    ) -> Result<Vec<(String, Subnet)>, CloudError> {
        let mut offered: BTreeSet<(String, String)> = BTreeSet::new();
        for chunk in types.chunks(FILTER_VALUES_MAX) {
            let action = format!(
                "DescribeInstanceTypeOfferings (availability zones, {})",
                chunk.join(", ")
            );
            let mut pages = self
                .ec2
                .describe_instance_type_offerings()
                .location_type(LocationType::AvailabilityZone)
                .filters(
                    Filter::builder()
                        .name("instance-type")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                )
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|err| self.sdk_error(&action, err))?;
                for offering in page.instance_type_offerings() {
                    if let (Some(kind), Some(zone)) =
                        (offering.instance_type(), offering.location())
                    {
                        offered.insert((kind.as_str().to_string(), zone.to_string()));
                    }
                }
            }
        }
        let mut placements = Vec::new();
        for kind in types {
            let here: Vec<&Subnet> = subnets
                .iter()
                .filter(|s| offered.contains(&(kind.clone(), s.zone.clone())))
                .collect();
            if here.is_empty() {
                let zones: Vec<&str> = subnets.iter().map(|s| s.zone.as_str()).collect();
                return Err(CloudError::TypeNotOffered {
                    flag,
                    instance_type: kind.clone(),
                    region: self.region.clone(),
                    zones: zones.join(" "),
                });
            }
            placements.extend(here.into_iter().map(|s| (kind.clone(), s.clone())));
        }
        Ok(placements)
    }

    /// An instant EC2 Fleet over `placements` (type, subnet) of the role:
    /// what it launched and, when fewer than asked, why.
    pub(crate) async fn fleet_spot(
        &self,
        shared: &Shared<'_>,
        role: &RolePlan,
        template: &str,
        placements: &[(String, Subnet)],
    ) -> Result<FleetLaunch, CloudError> {
        let plan = shared.plan;
        let types = role.instance_types.join(",");
        let zones: BTreeSet<&str> = placements.iter().map(|(_, s)| s.zone.as_str()).collect();
        let action = format!(
            "CreateFleet ({} × {} from {types} over {} zones)",
            role.count,
            role.role,
            zones.len()
        );
        let answer = self
            .ec2
            .create_fleet()
            .r#type(FleetType::Instant)
            .launch_template_configs(template_config(shared, template, placements)?)
            .target_capacity_specification(
                TargetCapacitySpecificationRequest::builder()
                    .total_target_capacity(i32::try_from(role.count).unwrap_or(i32::MAX))
                    .default_target_capacity_type(DefaultTargetCapacityType::Spot)
                    .build(),
            )
            .spot_options(
                SpotOptionsRequest::builder()
                    .allocation_strategy(SpotAllocationStrategy::PriceCapacityOptimized)
                    .instance_interruption_behavior(
                        aws_sdk_ec2::types::SpotInstanceInterruptionBehavior::Terminate,
                    )
                    .build(),
            )
            .tag_specifications(tagging(ResourceType::Fleet, &plan.fleet, None))
            .client_token(client_token(&plan.fleet, role.role))
            .send()
            .await
            .map_err(|err| self.role_sdk_error(role.role, &action, err))?;
        let ids: Vec<String> = answer
            .instances()
            .iter()
            .flat_map(aws_sdk_ec2::types::CreateFleetInstance::instance_ids)
            .cloned()
            .collect();
        let shortfall = shortfall(&answer, role, ids.len());
        Ok(FleetLaunch {
            fleet_id: answer.fleet_id().map(str::to_string),
            ids,
            shortfall,
        })
    }
}

/// Why an instant fleet launched fewer instances than asked, if it did.
fn shortfall(
    answer: &aws_sdk_ec2::operation::create_fleet::CreateFleetOutput,
    role: &RolePlan,
    launched: usize,
) -> Option<CloudError> {
    let wanted = role.count as usize;
    if launched >= wanted {
        return None;
    }
    let codes: Vec<(&str, &str)> = answer
        .errors()
        .iter()
        .map(|e| {
            (
                e.error_code().unwrap_or("UnknownError"),
                e.error_message().unwrap_or("no message"),
            )
        })
        .collect();
    let reasons: Vec<String> = codes.iter().map(|(c, m)| format!("{c}: {m}")).collect();
    Some(CloudError::Shortfall {
        role: role.role,
        launched,
        wanted,
        reasons: if reasons.is_empty() {
            "EC2 gave no reason".into()
        } else {
            reasons.join("; ")
        },
        fix: shortfall_fix(&codes),
    })
}

/// The fleet's one template with an override per (type, subnet): EC2 Fleet
/// then chooses among every zone that offers a type, not just one.
fn template_config(
    shared: &Shared<'_>,
    template: &str,
    placements: &[(String, Subnet)],
) -> Result<FleetLaunchTemplateConfigRequest, CloudError> {
    let mut config = FleetLaunchTemplateConfigRequest::builder().launch_template_specification(
        FleetLaunchTemplateSpecificationRequest::builder()
            .launch_template_id(template)
            .version("$Latest")
            .build(),
    );
    for (instance_type, subnet) in placements {
        let over = FleetLaunchTemplateOverridesRequest::builder()
            .instance_type(InstanceType::from(instance_type.as_str()))
            .subnet_id(&subnet.id)
            .image_id(image_for(shared.images, instance_type)?)
            .set_max_price(shared.plan.max_price.clone());
        config = config.overrides(over.build());
    }
    Ok(config.build())
}

fn market_options(max_price: Option<&str>) -> InstanceMarketOptionsRequest {
    let spot = SpotMarketOptions::builder()
        .spot_instance_type(SpotInstanceType::OneTime)
        .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
        .set_max_price(max_price.map(str::to_string));
    InstanceMarketOptionsRequest::builder()
        .market_type(MarketType::Spot)
        .spot_options(spot.build())
        .build()
}

fn image_for<'a>(images: &'a Images, instance_type: &str) -> Result<&'a str, CloudError> {
    images
        .get(instance_type)
        .map(String::as_str)
        .ok_or_else(|| CloudError::Unexpected {
            action: format!("choosing the AMI for {instance_type}"),
            detail: "no AMI was resolved for this type".into(),
        })
}

/// Makes a launch request safe to retry: EC2 runs a token's request once,
/// so a retried call after a lost answer starts no second set of instances.
fn client_token(fleet: &FleetName, role: Role) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    // FleetName is at most 32 characters, so this stays within EC2's 64.
    format!("sl-{fleet}-{role}-{:x}", nanos as u64)
}
