//! AWS partitions. ARNs and console links are written for the partition Cordon runs in
//! (`aws`, `aws-cn`, `aws-us-gov`, the isolated ones), never with `aws` written in: a role ARN
//! of the wrong partition is refused by STS, and a console link to the wrong domain leads an
//! analyst nowhere in the middle of an incident.

/// The partition of `region`, by AWS's region names (`cn-*`, `us-gov-*`, the European
/// Sovereign Cloud's `eusc-*`, the isolated `us-iso-*`, `us-isob-*`, `us-isof-*`,
/// `eu-isoe-*`); every other region is in `aws`.
pub fn of_region(region: &str) -> &'static str {
    const BY_PREFIX: [(&str, &str); 7] = [
        ("cn-", "aws-cn"),
        ("eusc-", "aws-eusc"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-isof-", "aws-iso-f"),
        ("eu-isoe-", "aws-iso-e"),
        ("us-iso-", "aws-iso"),
    ];
    BY_PREFIX
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map_or("aws", |(_, partition)| partition)
}

/// The partition an ARN names (`arn:PARTITION:...`); None for what is not an ARN.
pub fn of_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    (parts.next() == Some("arn"))
        .then(|| parts.next())
        .flatten()
        .filter(|partition| partition.starts_with("aws") && !partition.is_empty())
}

/// The console's address for `region` of `partition` (links add `?region=` themselves);
/// None where Cordon does not know the partition's console (the isolated ones, and any other
/// but these three): no link beats one to the wrong place.
pub fn console_base(partition: &str, region: &str) -> Option<String> {
    match partition {
        "aws" => Some(format!("https://{region}.console.aws.amazon.com")),
        "aws-cn" => Some("https://console.amazonaws.cn".into()),
        "aws-us-gov" => Some("https://console.amazonaws-us-gov.com".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_region_is_in_its_partition() {
        for (region, partition) in [
            ("us-east-1", "aws"),
            ("eu-west-1", "aws"),
            ("ap-southeast-6", "aws"),
            ("cn-north-1", "aws-cn"),
            ("cn-northwest-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-gov-east-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("us-isof-south-1", "aws-iso-f"),
            ("eu-isoe-west-1", "aws-iso-e"),
            ("eusc-de-east-1", "aws-eusc"),
        ] {
            assert_eq!(of_region(region), partition, "{region}");
        }
    }

    #[test]
    fn an_arn_names_its_partition() {
        assert_eq!(
            of_arn("arn:aws-us-gov:states:us-gov-west-1:111122223333:execution:q:e"),
            Some("aws-us-gov")
        );
        assert_eq!(
            of_arn("arn:aws-cn:sts::111122223333:assumed-role/r/s"),
            Some("aws-cn")
        );
        assert_eq!(of_arn("arn:aws:iam::111122223333:root"), Some("aws"));
        assert_eq!(of_arn("i-0123456789abcdef0"), None);
        assert_eq!(of_arn("arn::iam::1:root"), None);
        assert_eq!(of_arn("arn:evil.example:iam::1:root"), None);
    }

    #[test]
    fn console_links_go_to_the_partitions_own_console() {
        assert_eq!(
            console_base("aws", "eu-west-1").as_deref(),
            Some("https://eu-west-1.console.aws.amazon.com")
        );
        assert_eq!(
            console_base("aws-cn", "cn-north-1").as_deref(),
            Some("https://console.amazonaws.cn")
        );
        assert_eq!(
            console_base("aws-us-gov", "us-gov-west-1").as_deref(),
            Some("https://console.amazonaws-us-gov.com")
        );
        assert_eq!(console_base("aws-iso", "us-iso-east-1"), None);
    }
}
