//! The local AWS: moto's server on a free loopback port, reached through the real SDK with
//! dummy credentials, and a small lab that builds network topologies in it. The demo, the
//! local runner and the end-to-end tests all use this one copy.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::config::Credentials;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, InstanceNetworkInterfaceSpecification, IpPermission, IpRange,
    ResourceType, RuleAction, Tag, TagSpecification,
};
use aws_sdk_ec2::Client;
use cordon_core::aws::{AwsContext, AwsEc2};
use cordon_core::CordonError;

/// The region the local emulator is used in.
pub const REGION: &str = "us-east-1";

/// The local AWS emulator to start: `MOTO_SERVER`; else `root`'s `scripts/moto-server` (moto
/// from `.venv`, as `scripts/setup` installs it, with the fix of `scripts/moto_server.py`);
/// else `moto_server` from `PATH`.
pub fn moto_server_path(root: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let launcher = root.join("scripts/moto-server");
    if launcher.exists() {
        return launcher;
    }
    PathBuf::from("moto_server")
}

/// A moto server of this test's own, stopped when dropped.
pub struct Moto {
    child: Child,
    pub port: u16,
    pub endpoint: String,
}

impl Moto {
    /// Starts the emulator [`moto_server_path`] finds from the working directory.
    pub fn start() -> Result<Moto, String> {
        Moto::start_at(&moto_server_path(Path::new(".")))
    }

    /// Starts moto's server at `path` on a free loopback port and waits until it listens.
    pub fn start_at(path: &Path) -> Result<Moto, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        let mut child = Command::new(path)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start the local AWS emulator {} ({e}); run scripts/setup, which installs the pinned moto into .venv, or set MOTO_SERVER",
                    path.display()
                )
            })?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "the local AWS emulator {} exited ({status}) before it listened; run it to see why",
                    path.display()
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "moto did not listen on 127.0.0.1:{port} within 30 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Moto {
            child,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    pub fn sdk_config(&self) -> SdkConfig {
        emulator_config(&self.endpoint)
    }

    /// Cordon's AWS context, as the workers build it (the caller's own account).
    pub fn cordon_aws(&self) -> AwsContext {
        AwsContext::from_sdk_config(self.sdk_config())
    }

    /// Cordon's AWS context as an operator's commands build it (`cordon isolate`, `cordon
    /// restore`): a capture without an execution (no claim, the record on the instance) is
    /// theirs, made with the operator's credentials, not a worker's role.
    pub fn operator_aws(&self) -> AwsContext {
        self.cordon_aws().acting_as("cli")
    }

    /// Cordon's AWS context as the worker `worker` builds it: its calls name the worker, as
    /// the deployed function's do, so that a test calling a step directly has its calls
    /// judged against that worker's role.
    pub fn worker_aws(&self, worker: &str) -> AwsContext {
        self.cordon_aws().acting_as(worker)
    }

    /// Cordon's own adapter, as the workers and the CLI build it.
    pub fn cordon_ec2(&self) -> AwsEc2 {
        AwsContext::from_sdk_config(self.sdk_config()).ec2(Some(REGION))
    }

    /// SDK configuration acting in `account` through `role_name`, as the member role gives it
    /// (moto keeps each account's resources apart and maps the assumed keys to the account).
    pub async fn sdk_config_in(&self, account: &str, role_name: &str) -> SdkConfig {
        let sts = aws_sdk_sts::Client::new(&self.sdk_config());
        let assumed = sts
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account}:role/{role_name}"))
            .role_session_name("cordon-lab")
            .send()
            .await
            .unwrap();
        let c = assumed.credentials().unwrap();
        self.sdk_config()
            .into_builder()
            .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                Credentials::new(
                    c.access_key_id(),
                    c.secret_access_key(),
                    Some(c.session_token().to_string()),
                    None,
                    "cordon-lab",
                ),
            ))
            .build()
    }

    pub fn world(&self) -> World {
        World::from_sdk(&self.sdk_config())
    }

    /// Environment for a `cordon` child process pointed at this server.
    pub fn cli_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

/// SDK configuration for an emulator at `endpoint`: dummy credentials, the local region.
///
/// Its calls name `cordon-local` in their user agent; a worker's clients name the worker
/// instead (`AwsContext::acting_as`), so that a call naming neither was made some other way.
pub fn emulator_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .app_name(aws_config::AppName::new("cordon-local").expect("a valid app name"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
            Credentials::new("testing", "testing", None, None, "cordon-local"),
        ))
        .build()
}

/// A new KMS HMAC key on the emulator standing in for the stack's key `logical` (`LinkKey`,
/// `DecisionKey`, `BreakGlassKey`, `RecordKey`), which its description names, so that what
/// reads the emulator's calls can tell which key a call used ([`stack_key_of`]).
pub async fn create_stack_key(sdk: &SdkConfig, logical: &str) -> Result<String, CordonError> {
    create_hmac_key(sdk, &format!("{STACK_KEY_DESCRIPTION}{logical}")).await
}

/// The stack key a local key stands in for, from its description.
pub fn stack_key_of(description: &str) -> Option<&str> {
    description.strip_prefix(STACK_KEY_DESCRIPTION)
}

const STACK_KEY_DESCRIPTION: &str = "Cordon (local run): ";

/// A new KMS HMAC key on the emulator, made as the stack makes its `LinkKey` (`HMAC_256`,
/// `GENERATE_VERIFY_MAC`): the local links are signed and checked by KMS as in production,
/// with no key material in this process. Returns the key's ARN.
pub async fn create_hmac_key(sdk: &SdkConfig, description: &str) -> Result<String, CordonError> {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};
    let created = aws_sdk_kms::Client::new(sdk)
        .create_key()
        .key_spec(KeySpec::Hmac256)
        .key_usage(KeyUsageType::GenerateVerifyMac)
        .description(description)
        .send()
        .await
        .map_err(|e| CordonError::Unavailable {
            operation: "kms:CreateKey".into(),
            message: aws_sdk_kms::error::DisplayErrorContext(&e).to_string(),
        })?;
    created
        .key_metadata()
        .and_then(|key| key.arn())
        .map(String::from)
        .ok_or_else(|| CordonError::Unavailable {
            operation: "kms:CreateKey".into(),
            message: "the emulator answered without the new key's ARN".into(),
        })
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One NACL entry as a test compares it: (egress, rule number, action, protocol, CIDR).
pub type EntryView = (bool, i32, String, String, String);

/// The test's own view of EC2, through the plain SDK: builds topologies and reads outcomes.
pub struct World {
    pub ec2: Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub iam: aws_sdk_iam::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
}

/// A role as the tests and the demo compare it: its tags and its managed policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleState {
    pub tags: BTreeMap<String, String>,
    pub policies: Vec<String>,
}

/// An Auto Scaling group as the tests and the demo compare it: its desired capacity, and each
/// instance's lifecycle state and scale-in protection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    pub desired: i32,
    pub instances: BTreeMap<String, (String, bool)>,
}

impl GroupState {
    /// How many instances serve (InService).
    pub fn serving(&self) -> usize {
        self.instances
            .values()
            .filter(|(state, _)| state == "InService")
            .count()
    }
}

fn name_tag(resource: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .tags(Tag::builder().key("Name").value(name).build())
        .build()
}

impl World {
    pub fn from_sdk(sdk: &SdkConfig) -> Self {
        World {
            ec2: Client::new(sdk),
            autoscaling: aws_sdk_autoscaling::Client::new(sdk),
            iam: aws_sdk_iam::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
        }
    }

    /// An instance target group `name` in `vpc` (HTTP on `port`); its ARN.
    pub async fn target_group(&self, vpc: &str, name: &str, port: i32) -> String {
        let out = self
            .elb
            .create_target_group()
            .name(name)
            .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
            .port(port)
            .vpc_id(vpc)
            .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Instance)
            .send()
            .await
            .unwrap();
        out.target_groups()[0]
            .target_group_arn()
            .unwrap()
            .to_string()
    }

    /// Registers `instance` in the target group on `port`.
    pub async fn register_target(&self, target_group: &str, instance: &str, port: i32) {
        self.elb
            .register_targets()
            .target_group_arn(target_group)
            .targets(
                aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                    .id(instance)
                    .port(port)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// Tags target group `arn` with `key` = `value`, as anyone allowed `AddTags` may.
    pub async fn tag_target_group(&self, arn: &str, key: &str, value: &str) {
        self.elb
            .add_tags()
            .resource_arns(arn)
            .tags(
                aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// The tags of target group `arn`.
    pub async fn target_group_tags(&self, arn: &str) -> Vec<(String, String)> {
        let described = self
            .elb
            .describe_tags()
            .resource_arns(arn)
            .send()
            .await
            .unwrap();
        described.tag_descriptions()[0]
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The target group's targets: (instance, port), sorted.
    pub async fn targets(&self, target_group: &str) -> Vec<(String, i32)> {
        let out = self
            .elb
            .describe_target_health()
            .target_group_arn(target_group)
            .send()
            .await
            .unwrap();
        let mut targets: Vec<(String, i32)> = out
            .target_health_descriptions()
            .iter()
            .filter_map(|d| {
                let target = d.target()?;
                Some((target.id()?.to_string(), target.port().unwrap_or_default()))
            })
            .collect();
        targets.sort();
        targets
    }

    /// Cordon's deny policy for the credentials measure, as its stack deploys it.
    pub async fn deploy_credentials_deny(&self) {
        use cordon_core::measures::credentials::{deny_policy_document, POLICY_NAME, POLICY_PATH};
        self.iam
            .create_policy()
            .policy_name(POLICY_NAME)
            .path(POLICY_PATH)
            .policy_document(deny_policy_document().to_string())
            .send()
            .await
            .unwrap();
    }

    /// A role `name` for EC2 (tagged `team=<name>`, with a read policy of its own) in an
    /// instance profile of the same name; the profile's ARN.
    pub async fn instance_role(&self, name: &str) -> String {
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        self.iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust)
            .tags(
                aws_sdk_iam::types::Tag::builder()
                    .key("team")
                    .value(name)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        let read = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
        let policy = self
            .iam
            .create_policy()
            .policy_name(format!("{name}-read"))
            .policy_document(read)
            .send()
            .await
            .unwrap();
        self.iam
            .attach_role_policy()
            .role_name(name)
            .policy_arn(policy.policy().unwrap().arn().unwrap())
            .send()
            .await
            .unwrap();
        let profile = self
            .iam
            .create_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .unwrap();
        self.iam
            .add_role_to_instance_profile()
            .instance_profile_name(name)
            .role_name(name)
            .send()
            .await
            .unwrap();
        profile.instance_profile().unwrap().arn().to_string()
    }

    /// Gives `instance` the instance profile `name`.
    pub async fn give_profile(&self, instance: &str, name: &str) {
        self.ec2
            .associate_iam_instance_profile()
            .instance_id(instance)
            .iam_instance_profile(
                aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                    .name(name)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// Attaches a new 8 GiB volume to `instance` at `device`; its id.
    pub async fn attach_volume(&self, instance: &str, device: &str) -> String {
        let described = self
            .ec2
            .describe_instances()
            .instance_ids(instance)
            .send()
            .await
            .unwrap();
        let zone = described.reservations()[0].instances()[0]
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap()
            .to_string();
        let volume = self
            .ec2
            .create_volume()
            .availability_zone(zone)
            .size(8)
            .send()
            .await
            .unwrap();
        let id = volume.volume_id().unwrap().to_string();
        self.ec2
            .attach_volume()
            .instance_id(instance)
            .volume_id(&id)
            .device(device)
            .send()
            .await
            .unwrap();
        id
    }

    /// The instance's EBS volumes: device → (volume, deleted on termination).
    pub async fn volumes(&self, instance: &str) -> BTreeMap<String, (String, bool)> {
        let described = self
            .ec2
            .describe_instances()
            .instance_ids(instance)
            .send()
            .await
            .unwrap();
        described.reservations()[0].instances()[0]
            .block_device_mappings()
            .iter()
            .filter_map(|m| {
                let ebs = m.ebs()?;
                Some((
                    m.device_name()?.to_string(),
                    (
                        ebs.volume_id()?.to_string(),
                        ebs.delete_on_termination().unwrap_or(false),
                    ),
                ))
            })
            .collect()
    }

    /// The account's snapshots of `instance` that Cordon tagged: snapshot → (volume, tags).
    pub async fn evidence_of(
        &self,
        instance: &str,
    ) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
        let out = self
            .ec2
            .describe_snapshots()
            .owner_ids("self")
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:cordon:instance")
                    .values(instance)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.snapshots()
            .iter()
            .map(|s| {
                (
                    s.snapshot_id().unwrap_or_default().to_string(),
                    (
                        s.volume_id().unwrap_or_default().to_string(),
                        s.tags()
                            .iter()
                            .map(|t| {
                                (
                                    t.key().unwrap_or_default().to_string(),
                                    t.value().unwrap_or_default().to_string(),
                                )
                            })
                            .collect(),
                    ),
                )
            })
            .collect()
    }

    /// The role's tags and managed policies, as IAM lists them.
    pub async fn role_state(&self, role: &str) -> RoleState {
        let tags = self
            .iam
            .list_role_tags()
            .role_name(role)
            .send()
            .await
            .unwrap();
        let policies = self
            .iam
            .list_attached_role_policies()
            .role_name(role)
            .send()
            .await
            .unwrap();
        RoleState {
            tags: tags
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
            policies: policies
                .attached_policies()
                .iter()
                .filter_map(|p| p.policy_arn().map(String::from))
                .collect(),
        }
    }

    pub async fn vpc(&self, cidr: &str, ipv6: bool) -> String {
        let vpc = self
            .ec2
            .create_vpc()
            .cidr_block(cidr)
            .amazon_provided_ipv6_cidr_block(ipv6)
            .send()
            .await
            .unwrap();
        vpc.vpc().unwrap().vpc_id().unwrap().to_string()
    }

    pub async fn vpc_ipv6_block(&self, vpc_id: &str) -> String {
        let out = self
            .ec2
            .describe_vpcs()
            .vpc_ids(vpc_id)
            .send()
            .await
            .unwrap();
        out.vpcs()[0].ipv6_cidr_block_association_set()[0]
            .ipv6_cidr_block()
            .unwrap()
            .to_string()
    }

    /// An interface endpoint of `service` (`ssm`, `ssmmessages`, ...) in `subnet`, private DNS
    /// on; its id and its interfaces' IPv4 addresses.
    pub async fn interface_endpoint(
        &self,
        vpc_id: &str,
        service: &str,
        subnet: &str,
    ) -> (String, Vec<String>) {
        let created = self
            .ec2
            .create_vpc_endpoint()
            .vpc_id(vpc_id)
            .vpc_endpoint_type(aws_sdk_ec2::types::VpcEndpointType::Interface)
            .service_name(format!("com.amazonaws.{REGION}.{service}"))
            .subnet_ids(subnet)
            .private_dns_enabled(true)
            .send()
            .await
            .unwrap();
        let endpoint = created.vpc_endpoint().unwrap();
        let interfaces = self
            .ec2
            .describe_network_interfaces()
            .set_network_interface_ids(Some(endpoint.network_interface_ids().to_vec()))
            .send()
            .await
            .unwrap();
        let addresses = interfaces
            .network_interfaces()
            .iter()
            .filter_map(|i| i.private_ip_address())
            .map(String::from)
            .collect();
        (endpoint.vpc_endpoint_id().unwrap().to_string(), addresses)
    }

    /// A security group's egress rules, each as `protocol from-to peer`.
    pub async fn egress_rules(&self, group_id: &str) -> Vec<String> {
        let groups = self
            .ec2
            .describe_security_groups()
            .group_ids(group_id)
            .send()
            .await
            .unwrap();
        let mut rules = Vec::new();
        for permission in groups.security_groups()[0].ip_permissions_egress() {
            let ports = format!(
                "{} {}-{}",
                permission.ip_protocol().unwrap_or_default(),
                permission.from_port().unwrap_or(-1),
                permission.to_port().unwrap_or(-1)
            );
            for range in permission.ip_ranges() {
                rules.push(format!("{ports} {}", range.cidr_ip().unwrap_or_default()));
            }
            for range in permission.ipv6_ranges() {
                rules.push(format!("{ports} {}", range.cidr_ipv6().unwrap_or_default()));
            }
        }
        rules.sort();
        rules
    }

    pub async fn subnet(&self, vpc_id: &str, cidr: &str, ipv6_cidr: Option<&str>) -> String {
        let out = self
            .ec2
            .create_subnet()
            .vpc_id(vpc_id)
            .cidr_block(cidr)
            .set_ipv6_cidr_block(ipv6_cidr.map(String::from))
            .availability_zone("us-east-1a")
            .send()
            .await
            .unwrap();
        out.subnet().unwrap().subnet_id().unwrap().to_string()
    }

    /// A group with one distinguishing ingress rule, as real application groups have.
    pub async fn security_group(&self, vpc_id: &str, name: &str, port: i32) -> String {
        let id = self
            .ec2
            .create_security_group()
            .vpc_id(vpc_id)
            .group_name(name)
            .description(format!("test group {name}"))
            .tag_specifications(name_tag(ResourceType::SecurityGroup, name))
            .send()
            .await
            .unwrap()
            .group_id()
            .unwrap()
            .to_string();
        self.ec2
            .authorize_security_group_ingress()
            .group_id(&id)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(port)
                    .to_port(port)
                    .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        id
    }

    /// Launches an instance with one interface per (subnet, groups), groups set per interface
    /// (the only way moto swaps interface groups faithfully). `ipv6` gives each interface one
    /// IPv6 address (moto ignores the count inside a launch, so interfaces are made first).
    pub async fn instance(
        &self,
        interfaces: &[(&str, &[&str])],
        ipv6: bool,
    ) -> (String, Vec<String>) {
        let mut launch = self
            .ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(1)
            .max_count(1);
        for (index, (subnet, groups)) in interfaces.iter().enumerate() {
            let spec = InstanceNetworkInterfaceSpecification::builder().device_index(index as i32);
            let spec = if ipv6 {
                let eni = self
                    .ec2
                    .create_network_interface()
                    .subnet_id(*subnet)
                    .set_groups(Some(groups.iter().map(|g| g.to_string()).collect()))
                    .ipv6_address_count(1)
                    .send()
                    .await
                    .unwrap();
                spec.network_interface_id(
                    eni.network_interface()
                        .unwrap()
                        .network_interface_id()
                        .unwrap(),
                )
            } else {
                spec.subnet_id(*subnet)
                    .set_groups(Some(groups.iter().map(|g| g.to_string()).collect()))
            };
            launch = launch.network_interfaces(spec.build());
        }
        let out = launch.send().await.unwrap();
        let instance = &out.instances()[0];
        let id = instance.instance_id().unwrap().to_string();
        let mut enis: Vec<(i32, String)> = instance
            .network_interfaces()
            .iter()
            .map(|e| {
                (
                    e.attachment().and_then(|a| a.device_index()).unwrap_or(0),
                    e.network_interface_id().unwrap().to_string(),
                )
            })
            .collect();
        enis.sort();
        (id, enis.into_iter().map(|(_, e)| e).collect())
    }

    pub async fn tag(&self, resource: &str, key: &str, value: &str) {
        self.ec2
            .create_tags()
            .resources(resource)
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .unwrap();
    }

    async fn describe_eni(&self, eni_id: &str) -> aws_sdk_ec2::types::NetworkInterface {
        let out = self
            .ec2
            .describe_network_interfaces()
            .network_interface_ids(eni_id)
            .send()
            .await
            .unwrap();
        out.network_interfaces()[0].clone()
    }

    pub async fn eni_groups(&self, eni_id: &str) -> Vec<String> {
        let eni = self.describe_eni(eni_id).await;
        eni.groups()
            .iter()
            .map(|g| g.group_id().unwrap().to_string())
            .collect()
    }

    pub async fn set_eni_groups(&self, eni_id: &str, groups: &[&str]) {
        self.ec2
            .modify_network_interface_attribute()
            .network_interface_id(eni_id)
            .set_groups(Some(groups.iter().map(|g| g.to_string()).collect()))
            .send()
            .await
            .unwrap();
    }

    pub async fn eni_ipv6(&self, eni_id: &str) -> Vec<String> {
        let eni = self.describe_eni(eni_id).await;
        eni.ipv6_addresses()
            .iter()
            .map(|a| a.ipv6_address().unwrap().to_string())
            .collect()
    }

    pub async fn eni_ipv4(&self, eni_id: &str) -> String {
        self.describe_eni(eni_id)
            .await
            .private_ip_address()
            .unwrap()
            .to_string()
    }

    /// An Auto Scaling group `name` in `subnet` (min 1, max 4) that launched one instance of
    /// its own, with `instance` attached to it: both InService, desired capacity 2.
    pub async fn auto_scaling_group(&self, name: &str, subnet: &str, instance: &str) {
        let template = self
            .ec2
            .create_launch_template()
            .launch_template_name(format!("{name}-template"))
            .launch_template_data(
                aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                    .image_id("ami-12c6146b")
                    .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let template_id = template
            .launch_template()
            .unwrap()
            .launch_template_id()
            .unwrap();
        self.autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(
                aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                    .launch_template_id(template_id)
                    .build(),
            )
            .min_size(1)
            .max_size(4)
            .desired_capacity(1)
            .vpc_zone_identifier(subnet)
            .send()
            .await
            .unwrap();
        self.autoscaling
            .attach_instances()
            .auto_scaling_group_name(name)
            .instance_ids(instance)
            .send()
            .await
            .unwrap();
    }

    /// The group as Auto Scaling describes it.
    pub async fn group_state(&self, name: &str) -> GroupState {
        let out = self
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .unwrap();
        let group = &out.auto_scaling_groups()[0];
        GroupState {
            desired: group.desired_capacity().unwrap_or_default(),
            instances: group
                .instances()
                .iter()
                .map(|i| {
                    (
                        i.instance_id().unwrap_or_default().to_string(),
                        (
                            i.lifecycle_state()
                                .map(|s| s.as_str().to_string())
                                .unwrap_or_default(),
                            i.protected_from_scale_in().unwrap_or(false),
                        ),
                    )
                })
                .collect(),
        }
    }

    pub async fn instance_tags(&self, instance_id: &str) -> BTreeMap<String, String> {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .unwrap();
        out.reservations()[0].instances()[0]
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Cordon's record of `instance_id` as break glass reads it: its claim's, else the
    /// instance's tags (None when neither keeps one).
    pub async fn kept_record(
        &self,
        instance_id: &str,
    ) -> cordon_core::Result<Option<cordon_core::record::CapturedState>> {
        let claims = self
            .ec2
            .describe_security_groups()
            .filters(
                Filter::builder()
                    .name(format!("tag:{}", cordon_core::claim::INSTANCE_TAG))
                    .values(instance_id)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let claim_tags: Vec<(String, String)> = claims
            .security_groups()
            .iter()
            .flat_map(|g| g.tags())
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .filter(|(key, _)| key.starts_with(cordon_core::record::STATE_TAG_PREFIX))
            .collect();
        let instance_tags: Vec<(String, String)> =
            self.instance_tags(instance_id).await.into_iter().collect();
        cordon_core::record::kept_record(
            instance_id,
            Some(&claim_tags),
            &instance_tags,
            chrono::Utc::now(),
        )
    }

    pub async fn termination_protection(&self, instance_id: &str) -> bool {
        let out = self
            .ec2
            .describe_instance_attribute()
            .instance_id(instance_id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::DisableApiTermination)
            .send()
            .await
            .unwrap();
        out.disable_api_termination()
            .and_then(|v| v.value())
            .unwrap_or(false)
    }

    pub async fn set_termination_protection(&self, instance_id: &str, enabled: bool) {
        self.ec2
            .modify_instance_attribute()
            .instance_id(instance_id)
            .disable_api_termination(AttributeBooleanValue::builder().value(enabled).build())
            .send()
            .await
            .unwrap();
    }

    async fn vpc_groups(&self, vpc_id: &str) -> Vec<aws_sdk_ec2::types::SecurityGroup> {
        let out = self
            .ec2
            .describe_security_groups()
            .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
            .send()
            .await
            .unwrap();
        out.security_groups().to_vec()
    }

    /// The security groups of a VPC, by id, with their rules: a snapshot to compare.
    pub async fn groups(&self, vpc_id: &str) -> BTreeMap<String, String> {
        self.vpc_groups(vpc_id)
            .await
            .iter()
            .map(|g| {
                (
                    g.group_id().unwrap().to_string(),
                    format!("{:?} {:?}", g.ip_permissions(), g.ip_permissions_egress()),
                )
            })
            .collect()
    }

    /// Group id -> group name, for people reading a demo.
    pub async fn group_names(&self, vpc_id: &str) -> BTreeMap<String, String> {
        self.vpc_groups(vpc_id)
            .await
            .iter()
            .map(|g| {
                (
                    g.group_id().unwrap().to_string(),
                    g.group_name().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    pub async fn cordon_group_ids(&self, vpc_id: &str) -> BTreeMap<String, String> {
        let out = self
            .ec2
            .describe_security_groups()
            .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
            .filters(
                Filter::builder()
                    .name("tag-key")
                    .values("cordon:role")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.security_groups()
            .iter()
            .map(|g| {
                let role = g
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some("cordon:role"))
                    .unwrap()
                    .value()
                    .unwrap()
                    .to_string();
                (role, g.group_id().unwrap().to_string())
            })
            .collect()
    }

    pub async fn acl_of(&self, subnet_id: &str) -> String {
        let out = self
            .ec2
            .describe_network_acls()
            .filters(
                Filter::builder()
                    .name("association.subnet-id")
                    .values(subnet_id)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.network_acls()[0].network_acl_id().unwrap().to_string()
    }

    /// A custom ACL for these subnets holding `allows` (rule number, egress, cidr) and the
    /// catch-all denies real AWS puts in every ACL.
    pub async fn custom_acl(
        &self,
        vpc_id: &str,
        subnets: &[&str],
        allows: &[(i32, bool, &str)],
    ) -> String {
        let acl = self
            .ec2
            .create_network_acl()
            .vpc_id(vpc_id)
            .send()
            .await
            .unwrap();
        let acl_id = acl
            .network_acl()
            .unwrap()
            .network_acl_id()
            .unwrap()
            .to_string();
        for (number, egress, cidr) in allows {
            self.acl_entry(&acl_id, *number, *egress, RuleAction::Allow, cidr)
                .await;
        }
        for subnet in subnets {
            let out = self
                .ec2
                .describe_network_acls()
                .filters(
                    Filter::builder()
                        .name("association.subnet-id")
                        .values(*subnet)
                        .build(),
                )
                .send()
                .await
                .unwrap();
            let association = out.network_acls()[0]
                .associations()
                .iter()
                .find(|a| a.subnet_id() == Some(subnet))
                .unwrap()
                .network_acl_association_id()
                .unwrap()
                .to_string();
            self.ec2
                .replace_network_acl_association()
                .association_id(association)
                .network_acl_id(&acl_id)
                .send()
                .await
                .unwrap();
        }
        acl_id
    }

    pub async fn acl_entry(
        &self,
        acl_id: &str,
        number: i32,
        egress: bool,
        action: RuleAction,
        cidr: &str,
    ) {
        let request = self
            .ec2
            .create_network_acl_entry()
            .network_acl_id(acl_id)
            .rule_number(number)
            .egress(egress)
            .protocol("-1")
            .rule_action(action);
        let request = if cidr.contains(':') {
            request.ipv6_cidr_block(cidr)
        } else {
            request.cidr_block(cidr)
        };
        request.send().await.unwrap();
    }

    /// Every ACL of the VPC with its entries, sorted, and its tags: a snapshot to compare.
    pub async fn acls(
        &self,
        vpc_id: &str,
    ) -> BTreeMap<String, (Vec<EntryView>, Vec<(String, String)>)> {
        let out = self
            .ec2
            .describe_network_acls()
            .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
            .send()
            .await
            .unwrap();
        out.network_acls()
            .iter()
            .map(|acl| {
                let mut entries: Vec<EntryView> = acl
                    .entries()
                    .iter()
                    .map(|e| {
                        (
                            e.egress().unwrap(),
                            e.rule_number().unwrap(),
                            e.rule_action().unwrap().as_str().to_string(),
                            e.protocol().unwrap_or_default().to_string(),
                            e.cidr_block()
                                .or(e.ipv6_cidr_block())
                                .unwrap_or_default()
                                .to_string(),
                        )
                    })
                    .collect();
                entries.sort();
                let mut tags: Vec<(String, String)> = acl
                    .tags()
                    .iter()
                    .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
                    .collect();
                tags.sort();
                (acl.network_acl_id().unwrap().to_string(), (entries, tags))
            })
            .collect()
    }

    /// The deny entries of one ACL below the default allow: (egress, number, cidr).
    pub async fn denies(&self, acl_id: &str) -> Vec<(bool, i32, String)> {
        let acls = self
            .ec2
            .describe_network_acls()
            .network_acl_ids(acl_id)
            .send()
            .await
            .unwrap();
        let mut found: Vec<(bool, i32, String)> = acls.network_acls()[0]
            .entries()
            .iter()
            .filter(|e| {
                e.rule_action().map(|a| a.as_str()) == Some("deny")
                    && e.rule_number().unwrap() < 32767
            })
            .map(|e| {
                (
                    e.egress().unwrap(),
                    e.rule_number().unwrap(),
                    e.cidr_block().or(e.ipv6_cidr_block()).unwrap().to_string(),
                )
            })
            .collect();
        found.sort();
        found
    }
}

/// A GuardDuty finding (bare, camelCase as EventBridge delivers it) for an instance made in
/// the test, shaped like the real C&C finding of AWS's documentation.
pub fn finding_for(instance_id: &str, severity: f64, remote_ipv4: &str) -> serde_json::Value {
    serde_json::json!({
        "schemaVersion": "2.0",
        "accountId": "123456789012",
        "region": REGION,
        "partition": "aws",
        "id": format!("cordon-test-{instance_id}"),
        "arn": format!("arn:aws:guardduty:{REGION}:123456789012:detector/d/finding/cordon-test-{instance_id}"),
        "type": "Backdoor:EC2/C&CActivity.B",
        "resource": {"resourceType": "Instance", "instanceDetails": {
            "instanceId": instance_id, "instanceType": "t3.micro", "launchTime": "2026-11-01T10:00:00.000Z"}},
        "service": {"serviceName": "guardduty", "resourceRole": "ACTOR", "archived": false, "count": 3,
            "eventFirstSeen": "2026-11-29T13:51:00.000Z", "eventLastSeen": "2026-11-29T13:58:30.000Z",
            "action": {"actionType": "NETWORK_CONNECTION", "networkConnectionAction": {
                "connectionDirection": "OUTBOUND", "protocol": "TCP", "blocked": false,
                "remoteIpDetails": {"ipAddressV4": remote_ipv4, "organization": {"asn": "64500"}},
                "remotePortDetails": {"port": 443, "portName": "HTTPS"}}}},
        "severity": severity,
        "createdAt": "2026-11-29T13:58:00.000Z",
        "updatedAt": "2026-11-29T13:59:00.000Z",
        "title": "Command and control server domain name queried by EC2 instance.",
        "description": "test finding"
    })
}

/// [`finding_for`], with the instance's VPC in `networkInterfaces` as GuardDuty describes it:
/// capture then claims the instance while it reads it.
pub fn finding_in_vpc(
    instance_id: &str,
    vpc_id: &str,
    severity: f64,
    remote_ipv4: &str,
) -> serde_json::Value {
    let mut finding = finding_for(instance_id, severity, remote_ipv4);
    finding["resource"]["instanceDetails"]["networkInterfaces"] =
        serde_json::json!([{"vpcId": vpc_id}]);
    finding
}
