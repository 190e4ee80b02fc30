//! A model of what AWS's EC2 API costs a caller, for the benchmark's "modelled AWS" (issue 16):
//! the latency of each action, and EC2's request token bucket per action, per account and
//! region. The fault proxy applies it to every EC2 call it forwards to moto: a call that finds
//! its action's bucket empty is answered `RequestLimitExceeded` (HTTP 503, as EC2 answers) and
//! not made; any other is forwarded and answered no sooner than its modelled latency.
//!
//! Sources:
//! - Token buckets: the EC2 developer guide, "Request throttling for the Amazon EC2 API"
//!   (<https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html>), its request
//!   token table: one bucket per API action; non-mutating 100 tokens refilled at 20 a second;
//!   the unfiltered and unpaginated non-mutating subset (DescribeInstances,
//!   DescribeInstanceStatus, DescribeNetworkInterfaces, DescribeSecurityGroups,
//!   DescribeSnapshots, DescribeSpotInstanceRequests, DescribeVolumes, asked with neither a
//!   filter nor pagination) 50 at 10; mutating 50 at 5; resource-intensive (among them
//!   AuthorizeSecurityGroupIngress, RevokeSecurityGroupIngress) 50 at 5 in buckets of their
//!   own; uncategorized actions with their own figures, of which CreateTags and DeleteTags
//!   100 at 10, ModifyNetworkInterfaceAttribute 100 at 5, CreateSnapshots 100 at 5.
//! - Latency: AWS publishes no latency for EC2's API, nor for a Step Functions transition or
//!   a Lambda invocation. The figures below are assumptions, of the order a caller in the
//!   same region sees (a read 100-200 ms, a write 200-400 ms); every figure of the report that
//!   depends on them is also given as a ratio to a floor computed from the same figures, which
//!   does not change much when they are scaled (`BENCH_LATENCY_SCALE`).

use std::collections::BTreeMap;
use std::time::Duration;

/// One action's token bucket: at most `capacity` tokens, `refill` added each second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub capacity: f64,
    pub refill: f64,
}

/// Whether a read names neither a filter nor pagination (`Filter.n.*`, `MaxResults`,
/// `NextToken`): then the subset of reads EC2 lists draws on the smaller bucket. Ids
/// (`InstanceId.1`, `GroupId.1`) are neither.
pub fn is_unfiltered_and_unpaginated(fields: &[(String, String)]) -> bool {
    !fields
        .iter()
        .any(|(key, _)| key.starts_with("Filter.") || key == "MaxResults" || key == "NextToken")
}

const SMALL_BUCKET_READS: [&str; 7] = [
    "DescribeInstances",
    "DescribeInstanceStatus",
    "DescribeNetworkInterfaces",
    "DescribeSecurityGroups",
    "DescribeSnapshots",
    "DescribeSpotInstanceRequests",
    "DescribeVolumes",
];

/// The bucket an EC2 call draws on, and its name (the small bucket of a read is a bucket of
/// its own: `DescribeSecurityGroups (unfiltered)`).
pub fn bucket_of(action: &str, fields: &[(String, String)]) -> (String, Bucket) {
    let bucket = |capacity, refill| Bucket { capacity, refill };
    let non_mutating = ["Describe", "List", "Search", "Get"]
        .iter()
        .any(|prefix| action.starts_with(prefix));
    if SMALL_BUCKET_READS.contains(&action) && is_unfiltered_and_unpaginated(fields) {
        return (format!("{action} (unfiltered)"), bucket(50.0, 10.0));
    }
    let figures = match action {
        "CreateTags" | "DeleteTags" => bucket(100.0, 10.0),
        "ModifyNetworkInterfaceAttribute" | "CreateSnapshots" => bucket(100.0, 5.0),
        _ if non_mutating => bucket(100.0, 20.0),
        // Mutating and resource-intensive actions alike: 50 at 5, a bucket per action.
        _ => bucket(50.0, 5.0),
    };
    (action.to_string(), figures)
}

/// The modelled latency of one EC2 action (assumed: see the module's comment).
pub fn latency_of(action: &str) -> Duration {
    let ms = match action {
        "DescribeInstances" => 180,
        "DescribeSecurityGroups" | "DescribeNetworkAcls" => 150,
        "DescribeInstanceAttribute" | "DescribeVpcs" | "DescribeSubnets" | "DescribeRegions" => 100,
        "CreateTags" | "DeleteTags" => 150,
        "ModifyNetworkInterfaceAttribute" => 300,
        "CreateSecurityGroup" | "DeleteSecurityGroup" => 300,
        "AuthorizeSecurityGroupIngress"
        | "AuthorizeSecurityGroupEgress"
        | "RevokeSecurityGroupIngress"
        | "RevokeSecurityGroupEgress" => 250,
        "CreateNetworkAclEntry" | "DeleteNetworkAclEntry" | "ReplaceNetworkAclEntry" => 250,
        "ModifyInstanceAttribute" => 250,
        action if action.starts_with("Describe") => 150,
        _ => 250,
    };
    Duration::from_millis(ms)
}

/// How long EC2 takes to answer a throttled call (it is refused before any work).
pub const THROTTLE_ANSWER: Duration = Duration::from_millis(30);

/// The Step Functions and Lambda costs the benchmark adds between steps (assumed; AWS
/// documents none): one state transition, and one invocation of a warm function.
pub const TRANSITION: Duration = Duration::from_millis(20);
pub const WARM_INVOCATION: Duration = Duration::from_millis(15);

/// EC2's request token buckets of one account and region, one per action, full at first.
#[derive(Debug, Default)]
pub struct TokenBuckets {
    /// Tokens left and when they were last counted, per bucket name.
    levels: BTreeMap<String, (f64, Duration)>,
}

impl TokenBuckets {
    /// Takes a token from `name`'s bucket at `now` (time since the model started); false
    /// when it is empty (the call is throttled and takes nothing).
    pub fn take(&mut self, name: &str, bucket: Bucket, now: Duration) -> bool {
        let (tokens, counted) = self
            .levels
            .entry(name.to_string())
            .or_insert((bucket.capacity, now));
        let refilled = (now.saturating_sub(*counted)).as_secs_f64() * bucket.refill;
        *tokens = (*tokens + refilled).min(bucket.capacity);
        *counted = now.max(*counted);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The shortest time in which the buckets let `calls` through (bucket name, bucket, calls
/// needed): for each bucket, the calls beyond its capacity at its refill rate; the slowest
/// bucket bounds the whole.
pub fn bucket_limit(calls: &[(String, Bucket, u64)]) -> Duration {
    calls
        .iter()
        .map(|(_, bucket, n)| ((*n as f64 - bucket.capacity).max(0.0)) / bucket.refill)
        .fold(Duration::ZERO, |limit, secs| {
            limit.max(Duration::from_secs_f64(secs))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_by_id_draw_on_the_small_bucket_and_filtered_reads_on_the_large_one() {
        let by_id = fields(&[("InstanceId.1", "i-0123")]);
        assert_eq!(
            bucket_of("DescribeInstances", &by_id),
            (
                "DescribeInstances (unfiltered)".to_string(),
                Bucket {
                    capacity: 50.0,
                    refill: 10.0
                }
            )
        );
        let filtered = fields(&[("Filter.1.Name", "tag-key"), ("Filter.1.Value.1", "x")]);
        assert_eq!(
            bucket_of("DescribeSecurityGroups", &filtered).1,
            Bucket {
                capacity: 100.0,
                refill: 20.0
            }
        );
        // Not in the small subset: always the standard non-mutating bucket.
        assert_eq!(
            bucket_of("DescribeInstanceAttribute", &by_id).1,
            Bucket {
                capacity: 100.0,
                refill: 20.0
            }
        );
    }

    #[test]
    fn writes_have_the_guides_figures_and_a_bucket_per_action() {
        let none = fields(&[]);
        assert_eq!(bucket_of("CreateTags", &none).1.refill, 10.0);
        assert_eq!(
            bucket_of("ModifyNetworkInterfaceAttribute", &none).1.refill,
            5.0
        );
        assert_eq!(
            bucket_of("ModifyNetworkInterfaceAttribute", &none)
                .1
                .capacity,
            100.0
        );
        assert_eq!(bucket_of("CreateNetworkAclEntry", &none).1.capacity, 50.0);
        assert_ne!(
            bucket_of("CreateSecurityGroup", &none).0,
            bucket_of("DeleteSecurityGroup", &none).0
        );
    }

    #[test]
    fn a_bucket_lets_its_capacity_through_at_once_then_its_refill_rate() {
        let mut buckets = TokenBuckets::default();
        let bucket = Bucket {
            capacity: 50.0,
            refill: 5.0,
        };
        let at = |ms| Duration::from_millis(ms);
        let granted = (0..60)
            .filter(|_| buckets.take("CreateTags", bucket, at(0)))
            .count();
        assert_eq!(granted, 50);
        assert!(!buckets.take("CreateTags", bucket, at(100)));
        assert!(buckets.take("CreateTags", bucket, at(200)));
        assert!(!buckets.take("CreateTags", bucket, at(300)));
        // Another action's bucket is untouched.
        assert!(buckets.take("CreateSecurityGroup", bucket, at(300)));
        // Never more than its capacity, however long it rests.
        let rested = (0..200)
            .filter(|_| buckets.take("CreateTags", bucket, at(3_600_000)))
            .count();
        assert_eq!(rested, 50);
    }

    #[test]
    fn the_bucket_limit_is_the_slowest_buckets_calls_beyond_its_capacity() {
        let modify = bucket_of("ModifyNetworkInterfaceAttribute", &[]);
        let tags = bucket_of("CreateTags", &[]);
        let limit = bucket_limit(&[(modify.0, modify.1, 2_000), (tags.0, tags.1, 2_000)]);
        // (2000 - 100) / 5 = 380 s against (2000 - 100) / 10 = 190 s.
        assert_eq!(limit, Duration::from_secs(380));
        let few = bucket_of("CreateTags", &[]);
        assert_eq!(bucket_limit(&[(few.0, few.1, 80)]), Duration::ZERO);
    }
}
