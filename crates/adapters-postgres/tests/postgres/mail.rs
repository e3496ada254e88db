use chrono::{Duration, Utc};
use diesel_async::RunQueryDsl;
use keel_adapters_postgres::PgMailbox;
use keel_adapters_postgres::testkit::TestDatabase;
use keel_domain::identity::user::UserId;
use keel_domain::identity::values::Email;
use keel_domain::mail::{Mail, MailSender, Mailbox};
use uuid::Uuid;

async fn insert_user(db: &TestDatabase) -> Uuid {
    let id = Uuid::new_v4();
    let mut conn = db.pool().get().await.unwrap();
    diesel::sql_query(
        "INSERT INTO users (id, email, display_name, role, password_hash, created_at) \
         VALUES ($1, $2, 'Mail Reader', 'participant', 'x', now())",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::Text, _>(format!("{}@example.com", id.simple()))
    .execute(&mut conn)
    .await
    .unwrap();
    id
}

/// The address a test mail is sent to (the mailbox does not keep it).
fn to() -> Email {
    Email::parse("reader@example.com").unwrap()
}

fn mail(user: Uuid, subject: &str) -> Mail {
    Mail {
        id: Uuid::new_v4(),
        user_id: user,
        subject: subject.into(),
        body: format!("body of {subject}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delivering_the_same_mail_twice_stores_it_once() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mailbox = PgMailbox::new(db.pool().clone());
    let user = insert_user(&db).await;
    let m = mail(user, "hello");
    let now = Utc::now();
    mailbox.send(&m, &to(), now).await.unwrap();
    mailbox
        .send(&m, &to(), now + Duration::seconds(5))
        .await
        .unwrap();
    let listed = mailbox.list(UserId(user), None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].mail, m);
    assert_eq!(listed[0].sent_at.timestamp_micros(), now.timestamp_micros());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mailbox_pages_newest_first_and_forgets() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mailbox = PgMailbox::new(db.pool().clone());
    let user = insert_user(&db).await;
    let someone_else = insert_user(&db).await;
    let start = Utc::now();
    // Two messages share a timestamp, so the id breaks the tie.
    let at = [0, 1, 1, 2, 3].map(|s| start + Duration::seconds(s));
    let mut sent = Vec::new();
    for (i, at) in at.iter().enumerate() {
        let m = mail(user, &format!("m{i}"));
        mailbox.send(&m, &to(), *at).await.unwrap();
        sent.push(m);
    }
    mailbox
        .send(&mail(someone_else, "not yours"), &to(), start)
        .await
        .unwrap();

    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = mailbox.list(UserId(user), cursor, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = Some((last.sent_at, last.mail.id));
        pages.push(page.into_iter().map(|d| d.mail).collect::<Vec<_>>());
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    let listed: Vec<Mail> = pages.into_iter().flatten().collect();
    let mut tied = [sent[1].clone(), sent[2].clone()];
    tied.sort_by_key(|m| std::cmp::Reverse(m.id));
    let expected = vec![
        sent[4].clone(),
        sent[3].clone(),
        tied[0].clone(),
        tied[1].clone(),
        sent[0].clone(),
    ];
    assert_eq!(listed, expected);

    assert_eq!(mailbox.forget(UserId(user)).await.unwrap(), 5);
    assert!(
        mailbox
            .list(UserId(user), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        mailbox
            .list(UserId(someone_else), None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_deletes_their_mail() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mailbox = PgMailbox::new(db.pool().clone());
    let user = insert_user(&db).await;
    mailbox
        .send(&mail(user, "bye"), &to(), Utc::now())
        .await
        .unwrap();
    let mut conn = db.pool().get().await.unwrap();
    diesel::sql_query("DELETE FROM users WHERE id = $1")
        .bind::<diesel::sql_types::Uuid, _>(user)
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(
        mailbox
            .list(UserId(user), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A message for a user who does not exist is refused.
    assert!(
        mailbox
            .send(&mail(user, "late"), &to(), Utc::now())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sends_are_stored_in_groups_and_a_refused_one_fails_alone() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mailbox = std::sync::Arc::new(PgMailbox::new(db.pool().clone()));
    let user = insert_user(&db).await;
    let gone = Uuid::new_v4(); // no such account: its message is refused by the foreign key
    let mails: Vec<Mail> = (0..60)
        .map(|n| mail(if n == 30 { gone } else { user }, &format!("m{n}")))
        .collect();
    let sends = mails.iter().cloned().map(|m| {
        let mailbox = std::sync::Arc::clone(&mailbox);
        tokio::spawn(async move { mailbox.send(&m, &to(), Utc::now()).await })
    });
    let outcomes: Vec<bool> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|sent| sent.unwrap().is_ok())
        .collect();
    let refused: Vec<usize> = (0..60).filter(|&n| !outcomes[n]).collect();
    assert_eq!(
        refused,
        vec![30],
        "only the message without a recipient fails"
    );
    let stored = mailbox.list(UserId(user), None, 100).await.unwrap();
    assert_eq!(stored.len(), 59);
    let stats = mailbox.send_stats();
    assert_eq!(stats.actions, 60);
    assert!(
        stats.largest > 1,
        "concurrent sends were grouped: {stats:?}"
    );
}
