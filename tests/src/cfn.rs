//! The templates' IAM policies as CloudFormation would deploy them: the intrinsic functions
//! (`Ref`, `Fn::Sub`, `Fn::GetAtt`, `Fn::If`, `Fn::Join`, `Fn::Split`, `Fn::Select` and the
//! condition functions) resolved for one set of parameters in one account and region, so that
//! an IAM evaluator can judge them. A function this resolver does not know is a test failure,
//! never a guess.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Where and with what the template is deployed.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub account: String,
    pub region: String,
    pub partition: String,
    pub stack_name: String,
    /// Parameter values; the template's defaults fill the rest.
    pub parameters: BTreeMap<String, Value>,
}

/// A template with its parameters and conditions settled.
pub struct Resolved<'t> {
    template: &'t Value,
    deployment: Deployment,
    parameters: BTreeMap<String, Value>,
}

impl<'t> Resolved<'t> {
    pub fn new(template: &'t Value, deployment: Deployment) -> Self {
        let mut parameters = BTreeMap::new();
        for (name, parameter) in template["Parameters"].as_object().into_iter().flatten() {
            let value = deployment
                .parameters
                .get(name)
                .cloned()
                .or_else(|| parameter.get("Default").cloned())
                .unwrap_or_else(|| panic!("parameter {name} has no value and no default"));
            // A CommaDelimitedList is a list once referenced.
            let value = match (parameter["Type"].as_str(), &value) {
                (Some("CommaDelimitedList"), Value::String(text)) => {
                    json!(text.split(',').collect::<Vec<_>>())
                }
                _ => value,
            };
            parameters.insert(name.clone(), value);
        }
        Resolved {
            template,
            deployment,
            parameters,
        }
    }

    pub fn resources(&self) -> &serde_json::Map<String, Value> {
        self.template["Resources"].as_object().unwrap()
    }

    /// The ARN a resource of the template gets (what `Fn::GetAtt [X, Arn]` gives).
    pub fn arn_of(&self, logical: &str) -> String {
        let resource = &self.resources()[logical];
        let (partition, region, account) = (
            &self.deployment.partition,
            &self.deployment.region,
            &self.deployment.account,
        );
        match resource["Type"].as_str().unwrap() {
            "AWS::IAM::Role" => {
                let path = match resource["Properties"].get("Path") {
                    Some(path) => self.resolve(path).as_str().unwrap().to_string(),
                    None => "/".into(),
                };
                let name = match resource["Properties"].get("RoleName") {
                    Some(name) => self.resolve(name).as_str().unwrap().to_string(),
                    None => format!("{}-{logical}-ABCDEF", self.deployment.stack_name),
                };
                format!("arn:{partition}:iam::{account}:role{path}{name}")
            }
            "AWS::KMS::Key" => format!("arn:{partition}:kms:{region}:{account}:key/{logical}"),
            "AWS::DynamoDB::Table" => {
                format!("arn:{partition}:dynamodb:{region}:{account}:table/{logical}")
            }
            "AWS::SNS::Topic" => format!("arn:{partition}:sns:{region}:{account}:{logical}"),
            "AWS::SQS::Queue" => format!("arn:{partition}:sqs:{region}:{account}:{logical}"),
            "AWS::StepFunctions::StateMachine" | "AWS::Serverless::StateMachine" => {
                let name = match resource["Properties"]
                    .get("Name")
                    .or_else(|| resource["Properties"].get("StateMachineName"))
                {
                    Some(name) => self.resolve(name).as_str().unwrap().to_string(),
                    None => logical.to_string(),
                };
                format!("arn:{partition}:states:{region}:{account}:stateMachine:{name}")
            }
            "AWS::Serverless::Function" | "AWS::Lambda::Function" => {
                format!("arn:{partition}:lambda:{region}:{account}:function:{logical}")
            }
            "AWS::Logs::LogGroup" => {
                format!("arn:{partition}:logs:{region}:{account}:log-group:{logical}:*")
            }
            "AWS::IAM::ManagedPolicy" => {
                let path = match resource["Properties"].get("Path") {
                    Some(path) => self.resolve(path).as_str().unwrap().to_string(),
                    None => "/".into(),
                };
                let name = resource["Properties"]
                    .get("ManagedPolicyName")
                    .map(|n| self.resolve(n).as_str().unwrap().to_string())
                    .unwrap_or_else(|| logical.to_string());
                format!("arn:{partition}:iam::{account}:policy{path}{name}")
            }
            other => format!("arn:{partition}:{other}:{region}:{account}:{logical}"),
        }
    }

    fn reference(&self, name: &str) -> Value {
        match name {
            "AWS::Partition" => json!(self.deployment.partition),
            "AWS::Region" => json!(self.deployment.region),
            "AWS::AccountId" => json!(self.deployment.account),
            "AWS::StackName" => json!(self.deployment.stack_name),
            "AWS::URLSuffix" => json!("amazonaws.com"),
            "AWS::NoValue" => Value::Null,
            name if self.parameters.contains_key(name) => self.parameters[name].clone(),
            name if self.resources().contains_key(name) => {
                match self.resources()[name]["Type"].as_str().unwrap() {
                    // What Ref gives for those whose ARN is the reference.
                    "AWS::SNS::Topic"
                    | "AWS::IAM::ManagedPolicy"
                    | "AWS::StepFunctions::StateMachine"
                    | "AWS::Serverless::StateMachine" => json!(self.arn_of(name)),
                    _ => json!(name),
                }
            }
            other => panic!("Ref to {other}, which the template does not define"),
        }
    }

    /// Whether the condition `name` of the template holds.
    pub fn condition(&self, name: &str) -> bool {
        let condition = &self.template["Conditions"][name];
        assert!(!condition.is_null(), "no condition {name}");
        self.resolve(condition).as_bool().unwrap()
    }

    fn substitute(&self, text: &str, variables: &BTreeMap<String, Value>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').expect("a closed ${...}");
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                // `${!Literal}` writes `${Literal}`.
                out.push_str(&format!("${{{literal}}}"));
            } else if let Some(value) = variables.get(name) {
                out.push_str(value.as_str().unwrap());
            } else if let Some((logical, attribute)) = name.split_once('.') {
                assert_eq!(attribute, "Arn", "${{{name}}}");
                out.push_str(&self.arn_of(logical));
            } else if name.contains(':') && !name.starts_with("AWS::") {
                // An IAM policy variable (`${aws:PrincipalTag/...}`): IAM's, not CloudFormation's.
                out.push_str(&format!("${{{name}}}"));
            } else {
                let value = self.reference(name);
                out.push_str(
                    value
                        .as_str()
                        .unwrap_or_else(|| panic!("${{{name}}} is not a string: {value}")),
                );
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// `value` with every intrinsic function resolved; `AWS::NoValue` removes its key or item.
    pub fn resolve(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) if map.len() == 1 => {
                let (key, argument) = map.iter().next().unwrap();
                match key.as_str() {
                    "Ref" => self.reference(argument.as_str().unwrap()),
                    "Fn::Sub" => match argument {
                        Value::String(text) => json!(self.substitute(text, &BTreeMap::new())),
                        Value::Array(pair) => {
                            let variables = pair[1]
                                .as_object()
                                .unwrap()
                                .iter()
                                .map(|(k, v)| (k.clone(), self.resolve(v)))
                                .collect();
                            json!(self.substitute(pair[0].as_str().unwrap(), &variables))
                        }
                        other => panic!("Fn::Sub of {other}"),
                    },
                    "Fn::GetAtt" => {
                        let parts = argument.as_array().unwrap();
                        assert_eq!(parts[1], "Arn", "Fn::GetAtt {argument}");
                        json!(self.arn_of(parts[0].as_str().unwrap()))
                    }
                    "Fn::If" => {
                        let parts = argument.as_array().unwrap();
                        let chosen = if self.condition(parts[0].as_str().unwrap()) {
                            &parts[1]
                        } else {
                            &parts[2]
                        };
                        self.resolve(chosen)
                    }
                    "Fn::Join" => {
                        let parts = argument.as_array().unwrap();
                        let items = self.resolve(&parts[1]);
                        let items: Vec<&str> = items
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|i| i.as_str().unwrap())
                            .collect();
                        json!(items.join(parts[0].as_str().unwrap()))
                    }
                    "Fn::Split" => {
                        let parts = argument.as_array().unwrap();
                        let text = self.resolve(&parts[1]);
                        json!(text
                            .as_str()
                            .unwrap()
                            .split(parts[0].as_str().unwrap())
                            .collect::<Vec<_>>())
                    }
                    "Fn::Select" => {
                        let parts = argument.as_array().unwrap();
                        let index: usize = match &parts[0] {
                            Value::String(text) => text.parse().unwrap(),
                            number => number.as_u64().unwrap() as usize,
                        };
                        self.resolve(&parts[1])[index].clone()
                    }
                    "Fn::Equals" => {
                        let parts = argument.as_array().unwrap();
                        json!(self.resolve(&parts[0]) == self.resolve(&parts[1]))
                    }
                    "Fn::Not" => json!(!self.resolve(&argument[0]).as_bool().unwrap()),
                    "Fn::And" => json!(argument
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|c| self.resolve(c).as_bool().unwrap())),
                    "Fn::Or" => json!(argument
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|c| self.resolve(c).as_bool().unwrap())),
                    "Condition" => json!(self.condition(argument.as_str().unwrap())),
                    key if key.starts_with("Fn::") => panic!("{key} is not resolved here"),
                    _ => json!({ key.clone(): self.resolve(argument) }),
                }
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.resolve(v)))
                    .filter(|(_, v)| !v.is_null())
                    .collect(),
            ),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.resolve(v))
                    .filter(|v| !v.is_null())
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Every identity policy document attached to the role `role`, resolved: its inline
    /// `Policies` and the `AWS::IAM::Policy` resources that name it (those whose condition
    /// holds).
    pub fn role_policies(&self, role: &str) -> Vec<(String, Value)> {
        let mut policies = Vec::new();
        for policy in self.resources()[role]["Properties"]["Policies"]
            .as_array()
            .into_iter()
            .flatten()
        {
            policies.push((
                policy["PolicyName"].as_str().unwrap().to_string(),
                self.resolve(&policy["PolicyDocument"]),
            ));
        }
        for (name, resource) in self.resources() {
            if resource["Type"] != "AWS::IAM::Policy" {
                continue;
            }
            if let Some(condition) = resource["Condition"].as_str() {
                if !self.condition(condition) {
                    continue;
                }
            }
            let names_role = resource["Properties"]["Roles"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["Ref"] == role);
            if names_role {
                policies.push((
                    name.clone(),
                    self.resolve(&resource["Properties"]["PolicyDocument"]),
                ));
            }
        }
        assert!(!policies.is_empty(), "{role} has no policy");
        policies
    }
}
