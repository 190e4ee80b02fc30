//! The ledger port implemented with aws-sdk-dynamodb: a table of Cordon's own account and
//! region (the stack's), reached with the worker's own credentials whatever account the
//! instance is in.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::port::Ledger;
use super::Release;
use crate::aws::sdk_error;
use crate::{CordonError, Result};

/// How long the ledger keeps a release: GuardDuty keeps a finding for 90 days.
const KEEP_SECONDS: i64 = 90 * 24 * 3600;

#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

impl DynamoLedger {
    pub fn new(config: &aws_config::SdkConfig, table: &str) -> Self {
        DynamoLedger {
            client: Client::new(config),
            table: table.to_string(),
        }
    }
}

fn text(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> Result<String> {
    item.get(name)
        .and_then(|value| value.as_s().ok())
        .cloned()
        .ok_or_else(|| CordonError::CorruptRecord {
            resource: "the release ledger".into(),
            message: format!("an item has no string {name}"),
        })
}

impl Ledger for DynamoLedger {
    async fn release_of(&self, finding_id: &str) -> Result<Option<Release>> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("finding_id", AttributeValue::S(finding_id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("dynamodb:GetItem", &self.table, e))?;
        let Some(item) = answer.item() else {
            return Ok(None);
        };
        Ok(Some(Release {
            finding_id: text(item, "finding_id")?,
            instance_id: text(item, "instance_id")?,
            released_at: text(item, "released_at")?,
            execution: text(item, "execution")?,
            archived_by_cordon: item
                .get("archived_by_cordon")
                .and_then(|value| value.as_bool().ok())
                .copied()
                .unwrap_or(false),
        }))
    }

    async fn record_release(&self, release: &Release) -> Result<()> {
        let expires = chrono::Utc::now().timestamp() + KEEP_SECONDS;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("finding_id", AttributeValue::S(release.finding_id.clone()))
            .item(
                "instance_id",
                AttributeValue::S(release.instance_id.clone()),
            )
            .item(
                "released_at",
                AttributeValue::S(release.released_at.clone()),
            )
            .item("execution", AttributeValue::S(release.execution.clone()))
            .item("expires_at", AttributeValue::N(expires.to_string()))
            .send()
            .await
            .map_err(|e| sdk_error("dynamodb:PutItem", &self.table, e))?;
        Ok(())
    }

    async fn mark_archived(&self, finding_id: &str, execution: &str) -> Result<bool> {
        let marked = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("finding_id", AttributeValue::S(finding_id.to_string()))
            .update_expression("SET archived_by_cordon = :archived")
            .condition_expression("execution = :execution")
            .expression_attribute_values(":archived", AttributeValue::Bool(true))
            .expression_attribute_values(":execution", AttributeValue::S(execution.to_string()))
            .send()
            .await;
        match marked {
            Ok(_) => Ok(true),
            Err(error)
                if aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&error)
                    == Some("ConditionalCheckFailedException") =>
            {
                Ok(false)
            }
            Err(error) => Err(sdk_error("dynamodb:UpdateItem", &self.table, error)),
        }
    }
}
