// SPDX-License-Identifier: MPL-2.0

//! Topic administration without Kafka's shell scripts (the tutorial's
//! `kafka-topics.sh --create/--list/--describe/--delete`), with rdkafka's
//! admin client:
//!
//! cargo run --example kafka-topics -- [--bootstrap-server H:P] list
//! cargo run --example kafka-topics -- create cam1 [--partitions 3] [--replication-factor 1]
//!                                     [--retention-ms 86400000] [--max-message-bytes 16777216]
//! cargo run --example kafka-topics -- describe cam1
//! cargo run --example kafka-topics -- delete cam1

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

type Error = Box<dyn std::error::Error>;

fn option(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bootstrap = option(&args, "--bootstrap-server").unwrap_or_else(|| "127.0.0.1:9092".into());
    let positional: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || !args[i - 1].starts_with("--")))
        .map(|(_, a)| a)
        .collect();
    let command = positional.first().map(|s| s.as_str()).unwrap_or("list");
    let topic = positional.get(1).map(|s| s.as_str());

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    let timeout = Duration::from_secs(10);
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    match (command, topic) {
        ("list", _) => {
            let metadata = admin.inner().fetch_metadata(None, timeout)?;
            let mut names: Vec<&str> = metadata
                .topics()
                .iter()
                .map(|t| t.name())
                .filter(|n| !n.starts_with("__"))
                .collect();
            names.sort();
            for name in names {
                println!("{name}");
            }
        }
        ("create", Some(topic)) => {
            let partitions: i32 = option(&args, "--partitions")
                .unwrap_or_else(|| "1".into())
                .parse()?;
            let replication: i32 = option(&args, "--replication-factor")
                .unwrap_or_else(|| "-1".into())
                .parse()?;
            let max_bytes =
                option(&args, "--max-message-bytes").unwrap_or_else(|| "16777216".into());
            let retention = option(&args, "--retention-ms");
            let mut new_topic =
                NewTopic::new(topic, partitions, TopicReplication::Fixed(replication))
                    .set("max.message.bytes", &max_bytes);
            if let Some(retention) = &retention {
                new_topic = new_topic.set("retention.ms", retention);
            }
            for result in runtime.block_on(admin.create_topics([&new_topic], &options))? {
                match result {
                    Ok(name) => println!("created {name}"),
                    Err((name, code)) => return Err(format!("cannot create {name}: {code}").into()),
                }
            }
        }
        ("describe", Some(topic)) => {
            let metadata = admin.inner().fetch_metadata(Some(topic), timeout)?;
            for entry in metadata.topics() {
                if let Some(error) = entry.error() {
                    return Err(format!(
                        "{topic}: {:?}",
                        rdkafka::types::RDKafkaErrorCode::from(error)
                    )
                    .into());
                }
                println!(
                    "topic {} partitions {}",
                    entry.name(),
                    entry.partitions().len()
                );
                for partition in entry.partitions() {
                    println!(
                        "  partition {} leader {} replicas {:?} isr {:?}",
                        partition.id(),
                        partition.leader(),
                        partition.replicas(),
                        partition.isr()
                    );
                }
            }
            let resource = ResourceSpecifier::Topic(topic);
            for config in runtime.block_on(admin.describe_configs([&resource], &options))? {
                let config =
                    config.map_err(|code| format!("cannot describe configs of {topic}: {code}"))?;
                for entry in config.entries.iter().filter(|e| !e.is_default) {
                    println!(
                        "  {} = {}",
                        entry.name,
                        entry.value.as_deref().unwrap_or("")
                    );
                }
            }
        }
        ("delete", Some(topic)) => {
            for result in runtime.block_on(admin.delete_topics(&[topic], &options))? {
                match result {
                    Ok(name) => println!("deleted {name}"),
                    Err((name, code)) => return Err(format!("cannot delete {name}: {code}").into()),
                }
            }
        }
        _ => return Err(
            "usage: kafka-topics [--bootstrap-server H:P] list | create T | describe T | delete T"
                .into(),
        ),
    }
    Ok(())
}
