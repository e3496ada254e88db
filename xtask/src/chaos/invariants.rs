//! The invariants checked after the load, with SQL on the run's cluster and keel's admin
//! endpoints. Each gives a count of violations and one example.

use std::collections::{BTreeMap, HashSet};

use keel_domain::competitions::RegistrationId;
use keel_domain::competitions::mails::mail_id;
use serde_json::Value;
use uuid::Uuid;

use super::client::Client;
use crate::bench::pg;

/// One invariant's outcome.
pub struct Check {
    /// What must hold.
    pub name: String,
    /// How many times it did not.
    pub violations: u64,
    /// One violation (empty when none).
    pub example: String,
}

impl Check {
    fn new(name: &str, violations: u64, example: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            violations,
            example: example.into(),
        }
    }
}

/// SQL invariants: each query answers `count|example`.
const SQL_CHECKS: [(&str, &str); 9] = [
    (
        "no oversold competition (seats_taken <= capacity, = registrations)",
        "SELECT count(*), coalesce(min(id::text), '') FROM competitions c WHERE seats_taken > \
         capacity OR seats_taken <> (SELECT count(*) FROM registrations r WHERE \
         r.competition_id = c.id)",
    ),
    (
        "one attendance per (event, participant)",
        "SELECT count(*), coalesce(min(k), '') FROM (SELECT event_id::text || '/' || \
         participant_id::text AS k FROM attendances GROUP BY event_id, participant_id \
         HAVING count(*) > 1) d",
    ),
    (
        "one certificate per (event, participant)",
        "SELECT count(*), coalesce(min(k), '') FROM (SELECT event_id::text || '/' || \
         participant_id::text AS k FROM certificates GROUP BY event_id, participant_id \
         HAVING count(*) > 1) d",
    ),
    (
        "every ledger transaction balanced (SQL)",
        "SELECT count(*), coalesce(min(t::text), '') FROM (SELECT transaction_id AS t FROM \
         ledger_postings GROUP BY transaction_id HAVING sum(amount) <> 0) d",
    ),
    (
        "stored balance = sum of postings (SQL)",
        "SELECT count(*), coalesce(min(a.id::text), '') FROM ledger_accounts a LEFT JOIN \
         (SELECT account_id, sum(amount) AS s FROM ledger_postings GROUP BY account_id) p \
         ON p.account_id = a.id WHERE a.balance <> coalesce(p.s, 0)",
    ),
    (
        "no negative wallet balance",
        "SELECT count(*), coalesce(min(id::text), '') FROM ledger_accounts WHERE purpose IN \
         ('available', 'held') AND balance < 0",
    ),
    (
        "no job left running with an expired lease",
        "SELECT count(*), coalesce(min(kind || ' ' || id::text), '') FROM jobs \
         WHERE state = 'running' AND locked_until < now()",
    ),
    (
        "no doubled job (same kind + unique key)",
        "SELECT count(*), coalesce(min(k), '') FROM (SELECT kind || ':' || unique_key AS k \
         FROM jobs WHERE unique_key IS NOT NULL GROUP BY kind, unique_key \
         HAVING count(*) > 1) d",
    ),
    (
        "no doubled mail job (same mail id)",
        "SELECT count(*), coalesce(min(k), '') FROM (SELECT payload->>'id' AS k FROM jobs \
         WHERE kind = 'mail.send' GROUP BY payload->>'id' HAVING count(*) > 1) d",
    ),
];

/// Runs every SQL invariant.
pub fn sql(url: &str) -> Result<Vec<Check>, String> {
    SQL_CHECKS
        .iter()
        .map(|(name, query)| {
            let text = pg::psql(url, query)?;
            let (count, example) = text.trim().split_once('|').unwrap_or(("", ""));
            let count = count
                .parse()
                .map_err(|e| format!("{name}: cannot read {text:?}: {e}"))?;
            Ok(Check::new(name, count, example))
        })
        .collect()
}

/// Each registration has its confirmation mail job and its reminder job, and the confirmation
/// was delivered (after the drain).
pub fn registration_jobs(url: &str) -> Result<Vec<Check>, String> {
    let registrations = column(url, "SELECT id FROM registrations")?;
    let mails = column(
        url,
        "SELECT payload->>'id' FROM jobs WHERE kind = 'mail.send'",
    )?;
    let reminders = column(
        url,
        "SELECT unique_key FROM jobs WHERE kind = 'competitions.reminder'",
    )?;
    let delivered: HashSet<String> = column(url, "SELECT id FROM mailbox")?.into_iter().collect();
    let mails: HashSet<String> = mails.into_iter().collect();
    let reminders: HashSet<String> = reminders.into_iter().collect();
    let (mut no_mail, mut no_reminder, mut undelivered) = (Vec::new(), Vec::new(), Vec::new());
    for id in &registrations {
        let uuid = Uuid::parse_str(id).map_err(|e| format!("registration id {id}: {e}"))?;
        let mail = mail_id(RegistrationId(uuid), "confirmation").to_string();
        if !mails.contains(&mail) {
            no_mail.push(id.clone());
        }
        if !reminders.iter().any(|k| k.contains(id.as_str())) {
            no_reminder.push(id.clone());
        }
        if !delivered.contains(&mail) {
            undelivered.push(id.clone());
        }
    }
    Ok(vec![
        listed("each registration has its confirmation mail job", &no_mail),
        listed("each registration has its reminder job", &no_reminder),
        listed("each registration's confirmation delivered", &undelivered),
    ])
}

/// Every id answered by a 201 exists in its table.
pub fn created_ids(url: &str, created: &[(&'static str, String)]) -> Result<Check, String> {
    let mut by_table: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (table, id) in created {
        by_table.entry(table).or_default().push(id);
    }
    let mut missing = Vec::new();
    for (table, ids) in by_table {
        let stored: HashSet<String> = column(url, &format!("SELECT id FROM {table}"))?
            .into_iter()
            .collect();
        missing.extend(
            ids.into_iter()
                .filter(|id| !stored.contains(*id))
                .map(|id| format!("{table} {id}")),
        );
    }
    Ok(listed("every 201 id exists in its table", &missing))
}

/// `GET /admin/ledger/verify` is consistent and `GET /admin/audit/verify` intact.
pub async fn admin_reports(client: &Client, base: &str, admin: &str) -> Result<Vec<Check>, String> {
    let ledger = get_json(client, &format!("{base}/api/v1/admin/ledger/verify"), admin).await?;
    let audit = get_json(client, &format!("{base}/api/v1/admin/audit/verify"), admin).await?;
    let consistent = ledger.get("consistent").and_then(Value::as_bool) == Some(true);
    let intact = audit.get("intact").and_then(Value::as_bool) == Some(true);
    Ok(vec![
        Check::new(
            "admin ledger verify: balanced, balances = rebuild, none overdrawn",
            u64::from(!consistent),
            if consistent {
                String::new()
            } else {
                short(&ledger)
            },
        ),
        Check::new(
            "audit chain verifies",
            u64::from(!intact),
            if intact { String::new() } else { short(&audit) },
        ),
    ])
}

/// The Redis board (`GET /scoreboard/top?limit=100` on each node) = the Postgres order.
pub async fn board(client: &Client, bases: &[String], url: &str) -> Result<Check, String> {
    let truth = column(
        url,
        "SELECT user_id FROM scores ORDER BY score DESC, reached_at ASC, user_id ASC LIMIT 100",
    )?;
    let mut mismatches = Vec::new();
    for base in bases {
        let top = get_json(
            client,
            &format!("{base}/api/v1/scoreboard/top?limit=100"),
            "",
        )
        .await?;
        let served: Vec<String> = top
            .get("items")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.get("user_id")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if served != truth {
            let at = served
                .iter()
                .zip(&truth)
                .take_while(|(a, b)| a == b)
                .count();
            mismatches.push(format!(
                "{base}: {} served vs {} in Postgres, first difference at rank {}",
                served.len(),
                truth.len(),
                at + 1
            ));
        }
    }
    Ok(listed(
        "board (top 100) = Postgres order after repair",
        &mismatches,
    ))
}

/// A check from the list of its violations.
fn listed(name: &str, violations: &[String]) -> Check {
    Check::new(
        name,
        violations.len() as u64,
        violations.first().cloned().unwrap_or_default(),
    )
}

/// One text column of a query.
pub fn column(url: &str, sql: &str) -> Result<Vec<String>, String> {
    Ok(pg::psql(url, sql)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// `GET url` with an optional bearer token; the JSON body of a 200.
pub async fn get_json(client: &Client, url: &str, token: &str) -> Result<Value, String> {
    let mut request = client.raw().get(url);
    if !token.is_empty() {
        request = request.header("authorization", token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("GET {url}: {status} {}", short(&body)))
    }
}

fn short(v: &Value) -> String {
    v.to_string().chars().take(160).collect()
}
