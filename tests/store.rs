//! The store test suite: every test body runs against SQLite and against
//! PostgreSQL (`ALMANAC_TEST_PG_URL`), each on a fresh database of its own.

#[macro_use]
#[path = "common/backends.rs"]
mod backends;

use std::collections::{BTreeMap, HashMap, HashSet};

use almanac::geo::{CityId, Place, PlaceSource};
use almanac::members::Member;
use almanac::store::testing::TestDb;
use almanac::store::{
    Consent, Exclude, NewSend, Outcome, PlannerMark, Resolution, SendStatus, Store, UpsertKind,
};
use chrono::{DateTime, Duration, TimeZone, Utc};

both_backends!(
    members_round_trip,
    upsert_reports_kinds,
    ledger_claim_and_outcomes,
    claim_skips_opted_out_members,
    expired_leases_are_reclaimed,
    outcomes_need_the_lease,
    release_returns_rows,
    paused_channels_stay_pending_and_released_rows_are_uncharged,
    history_upcoming_retention,
    campaign_state_audit_and_token,
    reresolve_stale_members,
    forget_erases_personal_data,
    forget_races_planner_inserts,
    concurrent_inserts_keep_ledger_unique,
    concurrent_claimers_never_share_rows,
    planner_lease_admits_one_replica,
    planned_inserts_skip_present_keys,
    ledger_rows_keep_their_columns,
    planning_page_keeps_every_value,
    history_is_only_the_asked_members,
    consent_changes_by_event_time_and_outlives_imports,
    callback_signatures_are_accepted_once,
);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 9, 14, 2, 0, 0).unwrap()
}

fn member(n: u32) -> Member {
    Member {
        external_id: format!("crm-{n:05}"),
        openid: Some(format!("oOPENID{n:05}xyz")),
        name: Some(format!("张三{n}")),
        phone: Some(format!("+86139045{n:05}")),
        city: Some("Harbin".into()),
        province: Some("Heilongjiang".into()),
        lat: Some(format!("{}.{:04}", 30 + n % 50, 1000 + n).parse().unwrap()),
        lon: Some(126.6353),
        ip: Some("1.2.3.4".into()),
        lang: Some("zh-Hans".into()),
        tags: vec!["skincare".into(), "vip".into()],
        attrs: BTreeMap::from([("tier".to_string(), "gold".to_string())]),
        opted_out_at: None,
        last_interaction_at: Some(t0() - Duration::hours(3)),
    }
}

fn harbin() -> Place {
    Place {
        city: CityId(2037013),
        tz: chrono_tz::Asia::Shanghai,
        source: PlaceSource::Coordinates,
        confidence: 0.875,
        distance_km: Some(3.25),
    }
}

fn v1(member: Member) -> (Member, Resolution) {
    (
        member,
        Resolution {
            place: Some(harbin()),
            unresolved_reason: None,
            data_version: Some("v1".into()),
        },
    )
}

async fn add_members(store: &Store, count: u32) -> Vec<i64> {
    let rows: Vec<(Member, Option<Place>)> =
        (0..count).map(|n| (member(n), Some(harbin()))).collect();
    store.upsert_members(&rows).await.expect("upsert")
}

fn send(campaign: &str, occurrence: &str, member_id: i64, due_at: DateTime<Utc>) -> NewSend {
    NewSend {
        campaign_id: campaign.into(),
        occurrence: occurrence.into(),
        member_id,
        due_at,
        channel: "wechat-main".into(),
        lang: "cmn-Hans".into(),
        variant: "A".into(),
        text: format!("hello member {member_id}"),
        status: SendStatus::Pending,
        reason: None,
    }
}

fn count(backlog: &[(SendStatus, i64)], status: SendStatus) -> i64 {
    backlog.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n)
}

/// The planner's page carries awkward values unchanged: full-precision floats,
/// quotes, backslashes, control characters and non-BMP text in names, tags and
/// attributes, and an opt-out instant to the microsecond (both backends build the
/// page as one JSON document).
async fn planning_page_keeps_every_value(db: &TestDb) {
    let store = &db.store;
    let mut awkward = member(2);
    awkward.name = Some("O\"Brien \\ 🧴\t\u{1}".into());
    awkward.lat = Some(45.751_234_567_890_12);
    awkward.lon = Some(1.0 / 3.0);
    awkward.lang = None;
    awkward.tags = vec!["a\"b".into(), "c\\d".into(), "天气".into()];
    awkward.attrs = BTreeMap::from([("k\"ey".to_string(), "v\nal 🌧".to_string())]);
    awkward.opted_out_at = Some(t0() + Duration::microseconds(123_457));
    let mut many: Vec<(Member, Resolution)> = (10..40).map(|n| v1(member(n))).collect();
    many.push(v1(awkward.clone()));
    store.upsert_resolved(&many).await.unwrap();
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store.planning_page(after, 7).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        seen.extend(page);
    }
    assert_eq!(seen.len(), 31);
    assert!(seen.windows(2).all(|pair| pair[0].id < pair[1].id), "pages in id order");
    let found = seen.iter().find(|m| m.member.external_id == awkward.external_id).unwrap();
    assert_eq!(found.member.name, awkward.name);
    assert_eq!(found.member.lat, awkward.lat);
    assert_eq!(found.member.lon, awkward.lon);
    assert_eq!(found.member.lang, None);
    assert_eq!(found.member.tags, awkward.tags);
    assert_eq!(found.member.attrs, awkward.attrs);
    assert_eq!(found.member.opted_out_at, awkward.opted_out_at);
    assert_eq!(found.place, Some(harbin()));
}

/// History for a set of ids with a gap (SQLite reads a dense set as one range of
/// the index) holds exactly those members.
async fn history_is_only_the_asked_members(db: &TestDb) {
    let store = &db.store;
    let rows: Vec<(Member, Resolution)> = (1..=3).map(|n| v1(member(n))).collect();
    let ids: Vec<i64> =
        store.upsert_resolved(&rows).await.unwrap().iter().map(|upserted| upserted.id).collect();
    let sends: Vec<NewSend> = ids.iter().map(|id| send("c", "1", *id, t0())).collect();
    assert_eq!(store.insert_sends(&sends).await.unwrap(), 3);
    let since = t0() - Duration::days(1);
    let outer = store.send_history(&[ids[0], ids[2]], since).await.unwrap();
    let mut members: Vec<i64> = outer.iter().map(|entry| entry.member_id).collect();
    members.sort_unstable();
    assert_eq!(members, vec![ids[0], ids[2]]);
    let middle = store.send_history(&[ids[1]], since).await.unwrap();
    assert_eq!(middle.iter().map(|entry| entry.member_id).collect::<Vec<_>>(), vec![ids[1]]);
    assert!(store.send_history(&[], since).await.unwrap().is_empty());
    assert!(store.send_history(&ids, t0() + Duration::days(1)).await.unwrap().is_empty());
}

async fn members_round_trip(db: &TestDb) {
    let store = &db.store;
    let mut unresolved = member(7);
    unresolved.lat = None;
    unresolved.lon = None;
    unresolved.tags = vec![];
    unresolved.attrs = BTreeMap::new();
    unresolved.opted_out_at = Some(t0());
    let ids = store
        .upsert_resolved(&[
            v1(member(1)),
            (
                unresolved.clone(),
                Resolution {
                    place: None,
                    unresolved_reason: Some("no location hint".into()),
                    data_version: Some("v1".into()),
                },
            ),
        ])
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0].id, ids[1].id);

    let stored = store.get_member("crm-00001").await.unwrap().expect("member 1");
    assert_eq!(stored.id, ids[0].id);
    assert_eq!(stored.member, member(1));
    assert_eq!(stored.place, Some(harbin()));
    assert_eq!(stored.unresolved_reason, None);

    let stored = store.get_member("crm-00007").await.unwrap().expect("member 7");
    assert_eq!(stored.member, unresolved);
    assert_eq!(stored.place, None);
    assert_eq!(stored.unresolved_reason.as_deref(), Some("no location hint"));
    assert!(store.get_member("nobody").await.unwrap().is_none());

    let page = store.members_page(0, 10).await.unwrap();
    assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[0].id, ids[1].id]);
    let rest = store.members_page(ids[0].id, 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, ids[1].id);

    // The planner's page: the engine's fields as stored, the others empty.
    let planning = store.planning_page(0, 10).await.unwrap();
    assert_eq!(planning.len(), 2);
    let expected = Member {
        openid: None,
        phone: None,
        city: None,
        province: None,
        ip: None,
        last_interaction_at: None,
        ..member(1)
    };
    assert_eq!(planning[0].member, expected);
    assert_eq!(planning[0].place, Some(harbin()));
    assert_eq!(planning[1].member.opted_out_at, Some(t0()));
    assert_eq!(planning[1].place, None);
    assert_eq!(store.planning_page(ids[0].id, 10).await.unwrap()[0].id, ids[1].id);

    assert_eq!(store.member_id_by_openid("oOPENID00001xyz").await.unwrap(), Some(ids[0].id));
    assert_eq!(store.member_id_by_openid("unknown").await.unwrap(), None);

    let counts = store.member_counts().await.unwrap();
    assert_eq!((counts.total, counts.unresolved), (2, 1));

    assert!(store.set_consent(ids[0].id, Consent::OptedOut, t0()).await.unwrap());
    let opted = store.get_member("crm-00001").await.unwrap().unwrap();
    assert_eq!(opted.member.opted_out_at, Some(t0()));
    let earlier = t0() - Duration::minutes(1);
    assert!(
        !store.set_consent(ids[0].id, Consent::OptedIn, earlier).await.unwrap(),
        "an older subscribe arriving late does not undo a newer unsubscribe"
    );
    assert!(
        !store.set_consent(ids[0].id, Consent::OptedIn, t0()).await.unwrap(),
        "at the same instant the opt-out wins"
    );
    assert_eq!(
        store.get_member("crm-00001").await.unwrap().unwrap().member.opted_out_at,
        Some(t0())
    );
    assert!(
        store.set_consent(ids[0].id, Consent::OptedIn, t0() + Duration::seconds(1)).await.unwrap()
    );
    assert_eq!(store.get_member("crm-00001").await.unwrap().unwrap().member.opted_out_at, None);

    let later = t0() + Duration::minutes(5);
    store.touch_interaction(ids[0].id, later).await.unwrap();
    store.touch_interaction(ids[0].id, t0() - Duration::days(9)).await.unwrap();
    let touched = store.get_member("crm-00001").await.unwrap().unwrap();
    assert_eq!(touched.member.last_interaction_at, Some(later), "never moves backwards");
}

async fn upsert_reports_kinds(db: &TestDb) {
    let store = &db.store;
    let first = store.upsert_resolved(&[v1(member(1)), v1(member(2))]).await.unwrap();
    assert!(first.iter().all(|u| u.kind == UpsertKind::Inserted));

    let mut changed = member(2);
    changed.phone = Some("+8613800000000".into());
    let second =
        store.upsert_resolved(&[v1(member(1)), v1(changed.clone()), v1(member(3))]).await.unwrap();
    let kinds: Vec<UpsertKind> = second.iter().map(|u| u.kind).collect();
    assert_eq!(kinds, vec![UpsertKind::Unchanged, UpsertKind::Updated, UpsertKind::Inserted]);
    assert_eq!(second[0].id, first[0].id);
    assert_eq!(second[1].id, first[1].id);
    assert_eq!(store.get_member("crm-00002").await.unwrap().unwrap().member, changed);

    // The same external id twice in one batch: the later one wins.
    let mut again = member(4);
    let dup = again.clone();
    again.name = Some("later".into());
    let third = store.upsert_resolved(&[v1(dup), v1(again)]).await.unwrap();
    assert_eq!(third[0].id, third[1].id);
    let four = store.get_member("crm-00004").await.unwrap().unwrap();
    assert_eq!(four.member.name.as_deref(), Some("later"));
    assert_eq!(store.member_counts().await.unwrap().total, 4);
}

async fn ledger_claim_and_outcomes(db: &TestDb) {
    let store = &db.store;
    let ids = add_members(store, 4).await;
    let sends = vec![
        send("autumn", "2027-09-14", ids[0], t0() - Duration::minutes(2)),
        send("autumn", "2027-09-14", ids[1], t0() - Duration::minutes(5)),
        send("autumn", "2027-09-14", ids[2], t0() - Duration::minutes(1)),
        send("autumn", "2027-09-14", ids[3], t0() + Duration::hours(1)),
    ];
    assert_eq!(store.insert_sends(&sends).await.unwrap(), 4);
    assert_eq!(store.insert_sends(&sends).await.unwrap(), 0, "inserting twice is a no-op");
    let mut holdout = send("autumn", "2027-09-15", ids[0], t0() - Duration::hours(1));
    holdout.status = SendStatus::Holdout;
    assert_eq!(store.insert_sends(&[holdout]).await.unwrap(), 1);
    // Rows of members that do not exist are dropped.
    assert_eq!(store.insert_sends(&[send("autumn", "x", 999_999, t0())]).await.unwrap(), 0);

    let claimed = store.claim_due("a", t0(), Duration::minutes(5), 10).await.unwrap();
    let members: Vec<i64> = claimed.iter().map(|c| c.member_id).collect();
    assert_eq!(members, vec![ids[1], ids[0], ids[2]], "due rows only, by due instant");
    let first = &claimed[0];
    assert_eq!(first.external_id, "crm-00001");
    assert_eq!(first.openid.as_deref(), Some("oOPENID00001xyz"));
    assert_eq!(first.last_interaction_at, Some(t0() - Duration::hours(3)));
    assert_eq!(first.text, format!("hello member {}", ids[1]));
    assert_eq!(first.attempts, 0);
    assert_eq!(first.idempotency_key(), format!("autumn:2027-09-14:{}", ids[1]));
    assert!(store.claim_due("b", t0(), Duration::minutes(5), 10).await.unwrap().is_empty());

    let retry_at = t0() + Duration::minutes(10);
    let recorded = store
        .record_outcomes(
            "a",
            &[
                Outcome::Sent { id: claimed[0].id, at: t0(), provider_id: Some("msg-1".into()) },
                Outcome::Retry { id: claimed[1].id, at: retry_at, error: "HTTP 503".into() },
                Outcome::Dead { id: claimed[2].id, reason: "WeChat 40003 invalid openid".into() },
            ],
        )
        .await
        .unwrap();
    assert_eq!(recorded, 3);
    let backlog = store.backlog().await.unwrap();
    assert_eq!(count(&backlog, SendStatus::Sent), 1);
    assert_eq!(count(&backlog, SendStatus::Pending), 2);
    assert_eq!(count(&backlog, SendStatus::Dead), 1);
    assert_eq!(count(&backlog, SendStatus::Holdout), 1);
    assert_eq!(count(&backlog, SendStatus::Claimed), 0);

    // The retry waits for its instant, then comes back with one attempt made.
    let early = store.claim_due("a", retry_at - Duration::seconds(1), Duration::minutes(5), 10);
    assert!(early.await.unwrap().is_empty());
    let again = store.claim_due("a", retry_at, Duration::minutes(5), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, claimed[1].id);
    assert_eq!(again[0].attempts, 1);
    let skip = Outcome::Skipped { id: again[0].id, reason: "capped".into() };
    assert_eq!(store.record_outcomes("a", &[skip]).await.unwrap(), 1);
    let backlog = store.backlog().await.unwrap();
    assert_eq!(count(&backlog, SendStatus::Skipped), 1);
    assert_eq!(count(&backlog, SendStatus::Pending), 1);
}

async fn claim_skips_opted_out_members(db: &TestDb) {
    let store = &db.store;
    let ids = add_members(store, 3).await;
    let sends: Vec<NewSend> =
        ids.iter().map(|id| send("c", "o", *id, t0() - Duration::minutes(1))).collect();
    store.insert_sends(&sends).await.unwrap();
    store.set_consent(ids[1], Consent::OptedOut, t0() - Duration::seconds(30)).await.unwrap();
    let claimed = store.claim_due("a", t0(), Duration::minutes(5), 10).await.unwrap();
    let members: HashSet<i64> = claimed.iter().map(|c| c.member_id).collect();
    assert_eq!(members, HashSet::from([ids[0], ids[2]]));
    let backlog = store.backlog().await.unwrap();
    assert_eq!(count(&backlog, SendStatus::Skipped), 1);
    assert_eq!(count(&backlog, SendStatus::Claimed), 2);
    let rows = store.dump_all_text().await.unwrap();
    assert!(
        rows.iter().any(|(table, row)| table == "sends" && row.contains("opted_out")),
        "the skipped row says why"
    );
}

async fn expired_leases_are_reclaimed(db: &TestDb) {
    let store = &db.store;
    let ids = add_members(store, 2).await;
    let sends: Vec<NewSend> =
        ids.iter().map(|id| send("c", "o", *id, t0() - Duration::minutes(1))).collect();
    store.insert_sends(&sends).await.unwrap();
    let dead_replica = store.claim_due("dead", t0(), Duration::minutes(5), 10).await.unwrap();
    assert_eq!(dead_replica.len(), 2);
    let during = store.claim_due("live", t0() + Duration::minutes(4), Duration::minutes(5), 10);
    assert!(during.await.unwrap().is_empty(), "lease still held");
    let after = store
        .claim_due("live", t0() + Duration::minutes(6), Duration::minutes(5), 10)
        .await
        .unwrap();
    assert_eq!(after.len(), 2, "a dead replica's rows come back after the lease");
    // The dead replica releasing late does not take them back from the live owner.
    assert_eq!(store.release("dead").await.unwrap(), 0);
}

/// An outcome is recorded only while its writer holds the row: a replica that
/// stalled past its lease (another claimed the row meanwhile) or whose member was
/// forgotten mid-send writes nothing, so `attempts` counts once and an erased row
/// stays erased.
async fn outcomes_need_the_lease(db: &TestDb) {
    let store = &db.store;
    let ids = add_members(store, 2).await;
    // The second falls due after the first claim and before the takeover, so
    // each claim below takes one known row.
    let sends = vec![
        send("c", "o", ids[0], t0() - Duration::minutes(1)),
        send("c", "o", ids[1], t0() + Duration::minutes(3)),
    ];
    store.insert_sends(&sends).await.unwrap();
    let stalled = store.claim_due("stalled", t0(), Duration::minutes(5), 1).await.unwrap();
    let later = t0() + Duration::minutes(6);
    let live = store.claim_due("live", later, Duration::minutes(5), 1).await.unwrap();
    assert_eq!(live[0].id, stalled[0].id, "the expired lease was taken over");
    let sent = |id, provider: &str| Outcome::Sent {
        id,
        at: later,
        provider_id: Some(provider.to_owned()),
    };

    let late = store.record_outcomes("stalled", &[sent(stalled[0].id, "late")]).await.unwrap();
    assert_eq!(late, 0, "the stalled replica no longer holds the row");
    let backlog = store.backlog().await.unwrap();
    assert_eq!(count(&backlog, SendStatus::Claimed), 1, "still the live replica's");
    assert_eq!(store.release("live").await.unwrap(), 1, "its lease is intact");
    let again = store.claim_due("live", later, Duration::minutes(5), 1).await.unwrap();
    assert_eq!(again[0].id, stalled[0].id);
    assert_eq!(again[0].attempts, 0, "the late outcome counted no attempt");
    assert_eq!(store.record_outcomes("live", &[sent(again[0].id, "live")]).await.unwrap(), 1);
    assert_eq!(count(&store.backlog().await.unwrap(), SendStatus::Sent), 1);

    // The other member is forgotten while its push is in flight.
    let in_flight = store.claim_due("live", later, Duration::minutes(5), 1).await.unwrap();
    assert_eq!(in_flight[0].member_id, ids[1]);
    assert!(store.delete_member("crm-00001", "test").await.unwrap());
    let after = store.record_outcomes("live", &[sent(in_flight[0].id, "pm-1")]).await.unwrap();
    assert_eq!(after, 0, "a forgotten row is not written again");
    let backlog = store.backlog().await.unwrap();
    assert_eq!(count(&backlog, SendStatus::Skipped), 1, "forget skipped it: {backlog:?}");
    assert_eq!(count(&backlog, SendStatus::Sent), 1);
}

async fn release_returns_rows(db: &TestDb) {
    let store = &db.store;
    let ids = add_members(store, 3).await;
    let sends: Vec<NewSend> =
        ids.iter().map(|id| send("c", "o", *id, t0() - Duration::minutes(1))).collect();
    store.insert_sends(&sends).await.unwrap();
    assert_eq!(store.claim_due("a", t0(), Duration::minutes(5), 2).await.unwrap().len(), 2);
    assert_eq!(store.claim_due("b", t0(), Duration::minutes(5), 5).await.unwrap().len(), 1);
    assert_eq!(store.release("a").await.unwrap(), 2);
    let backlog = store.backlog().await.unwrap();
    assert_eq!(count(&backlog, SendStatus::Pending), 2);
    assert_eq!(count(&backlog, SendStatus::Claimed), 1);
    assert_eq!(store.claim_due("c", t0(), Duration::minutes(5), 5).await.unwrap().len(), 2);
}

async fn paused_channels_stay_pending_and_released_rows_are_uncharged(db: &TestDb) {
    let store = &db.store;
    let ids = add_members(store, 4).await;
    let due = t0() - Duration::minutes(1);
    let mut sends: Vec<NewSend> = ids.iter().map(|id| send("c", "o", *id, due)).collect();
    sends[0].channel = "hook".into();
    store.insert_sends(&sends).await.unwrap();
    let exclude = Exclude { campaigns: Vec::new(), channels: vec!["wechat-main".into()] };
    let lease = Duration::minutes(5);
    let claimed =
        store.claim_due_within("a", t0(), Duration::zero(), lease, 10, &exclude).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.channel.as_str()).collect::<Vec<_>>(), ["hook"]);

    // The channel resumes: its rows are claimed; one is handed back uncharged.
    let claimed = store.claim_due("a", t0(), lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let released = Outcome::Released { id: claimed[0].id, reason: "wechat_40164".into() };
    assert_eq!(store.record_outcomes("a", &[released]).await.unwrap(), 1);
    let again = store.claim_due("b", t0(), lease, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts, again[0].not_before), (claimed[0].id, 0, due));
}

async fn history_upcoming_retention(db: &TestDb) {
    let store = &db.store;
    let ids = add_members(store, 2).await;
    let sends = vec![
        send("a", "1", ids[0], t0() - Duration::days(40)),
        send("a", "2", ids[0], t0() - Duration::days(1)),
        send("b", "1", ids[0], t0() + Duration::days(2)),
        send("b", "2", ids[0], t0() + Duration::days(1)),
        send("a", "1", ids[1], t0() + Duration::days(3)),
    ];
    store.insert_sends(&sends).await.unwrap();
    // Send the two past ones.
    let claimed = store.claim_due("x", t0(), Duration::minutes(5), 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let outcomes: Vec<Outcome> =
        claimed.iter().map(|c| Outcome::Sent { id: c.id, at: t0(), provider_id: None }).collect();
    assert_eq!(store.record_outcomes("x", &outcomes).await.unwrap(), 2);

    let upcoming = store.upcoming_sends(ids[0], 10).await.unwrap();
    let occurrences: Vec<(&str, &str)> =
        upcoming.iter().map(|s| (s.campaign_id.as_str(), s.occurrence.as_str())).collect();
    assert_eq!(occurrences, vec![("b", "2"), ("b", "1")]);
    assert_eq!(store.upcoming_sends(ids[0], 1).await.unwrap().len(), 1);

    let history = store.send_history(&[ids[0]], t0() - Duration::days(30)).await.unwrap();
    assert_eq!(history.len(), 3, "{history:?}");
    assert!(history.iter().all(|h| h.member_id == ids[0]));
    let both = store.send_history(&ids, t0() - Duration::days(365)).await.unwrap();
    assert_eq!(both.len(), 5);

    assert_eq!(store.retention(t0() - Duration::days(30)).await.unwrap(), 1);
    assert_eq!(store.retention(t0() - Duration::days(30)).await.unwrap(), 0);
    let backlog = store.backlog().await.unwrap();
    assert_eq!(count(&backlog, SendStatus::Sent), 1);
    assert_eq!(count(&backlog, SendStatus::Pending), 3, "pending rows are never deleted");
}

async fn campaign_state_audit_and_token(db: &TestDb) {
    let store = &db.store;
    assert!(store.campaign_states().await.unwrap().is_empty());
    store.set_campaign_paused("b", true).await.unwrap();
    store.set_campaign_hash("a", "sha256:aa").await.unwrap();
    store.set_campaign_hash("b", "sha256:bb").await.unwrap();
    store.set_campaign_paused("a", false).await.unwrap();
    let states = store.campaign_states().await.unwrap();
    assert_eq!(states.len(), 2);
    assert_eq!((states[0].campaign_id.as_str(), states[0].paused), ("a", false));
    assert_eq!(states[0].content_hash.as_deref(), Some("sha256:aa"));
    assert_eq!((states[1].campaign_id.as_str(), states[1].paused), ("b", true));
    assert_eq!(states[1].content_hash.as_deref(), Some("sha256:bb"));
    store.set_campaign_paused("b", false).await.unwrap();
    assert!(!store.campaign_states().await.unwrap()[1].paused);

    store.audit("ops", "pause", "campaign b", "from admin API").await.unwrap();
    store.audit("ops", "resume", "campaign b", "").await.unwrap();
    let log = store.audit_log(10).await.unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].action, "resume");
    assert_eq!(log[1].detail, "from admin API");
    assert_eq!(store.audit_log_since(Some(log[1].at), 10).await.unwrap(), log);
    assert_eq!(store.audit_log_since(Some(log[1].at), 1).await.unwrap(), log[..1]);
    assert_eq!(store.audit_log_since(None, 10).await.unwrap(), log);
    let later = log[0].at + Duration::seconds(1);
    assert!(store.audit_log_since(Some(later), 10).await.unwrap().is_empty());

    assert!(store.wechat_token("wx1").await.unwrap().is_none());
    store.put_wechat_token("wx1", "tok-1", t0()).await.unwrap();
    store.put_wechat_token("wx1", "tok-2", t0() + Duration::hours(2)).await.unwrap();
    let token = store.wechat_token("wx1").await.unwrap().unwrap();
    assert_eq!(token.token, "tok-2");
    assert_eq!(token.expires_at, t0() + Duration::hours(2));
    assert!(store.wechat_token("wx2").await.unwrap().is_none());
}

async fn reresolve_stale_members(db: &TestDb) {
    let store = &db.store;
    let rows: Vec<(Member, Resolution)> = (0..5).map(|n| v1(member(n))).collect();
    store.upsert_resolved(&rows).await.unwrap();
    add_members(store, 7).await; // members 0..5 again without a version, plus 5 and 6
    let resolver = |m: &Member| {
        if m.external_id.ends_with('3') {
            Err("unknown city".to_string())
        } else {
            Ok(Place { confidence: 0.5, ..harbin() })
        }
    };
    assert_eq!(store.reresolve_stale_with("v2", &resolver).await.unwrap(), 7);
    assert_eq!(store.reresolve_stale_with("v2", &resolver).await.unwrap(), 0, "nothing stale");
    let three = store.get_member("crm-00003").await.unwrap().unwrap();
    assert_eq!(three.place, None);
    assert_eq!(three.unresolved_reason.as_deref(), Some("unknown city"));
    let four = store.get_member("crm-00004").await.unwrap().unwrap();
    assert_eq!(four.place.map(|p| p.confidence), Some(0.5));
    assert_eq!(store.member_counts().await.unwrap().unresolved, 1);
}

async fn forget_erases_personal_data(db: &TestDb) {
    let store = &db.store;
    let ids = add_members(store, 3).await;
    let victim = member(1);
    let sends = vec![
        send("a", "1", ids[1], t0() - Duration::minutes(3)),
        send("a", "2", ids[1], t0() + Duration::days(1)),
        send("a", "1", ids[0], t0() - Duration::minutes(1)),
    ];
    store.insert_sends(&sends).await.unwrap();
    let claimed = store.claim_due("x", t0(), Duration::minutes(5), 10).await.unwrap();
    let outcomes: Vec<Outcome> = claimed
        .iter()
        .map(|c| Outcome::Sent {
            id: c.id,
            at: t0(),
            provider_id: Some(format!("pm-{}", c.member_id)),
        })
        .collect();
    assert_eq!(store.record_outcomes("x", &outcomes).await.unwrap(), 2);
    let target = format!("member {}", victim.external_id);
    store.audit("crm", "opt-out", &target, "openid oOPENID00001xyz").await.unwrap();

    let secrets = [
        victim.phone.clone().unwrap(),
        victim.openid.clone().unwrap(),
        victim.name.clone().unwrap(),
        victim.external_id.clone(),
        "31.1001".to_string(), // member 1's latitude
        "126.6353".to_string(),
        format!("hello member {}", ids[1]),
        format!("pm-{}", ids[1]),
    ];
    let before = store.dump_all_text().await.unwrap();
    for secret in &secrets {
        assert!(before.iter().any(|(_, row)| row.contains(secret.as_str())), "{secret} stored");
    }

    // Everyone else is forgotten too, except one bystander, to check the grep
    // looks at every row.
    assert!(store.delete_member(&victim.external_id, "cli").await.unwrap());
    assert!(!store.delete_member(&victim.external_id, "cli").await.unwrap());
    assert!(store.delete_member("crm-00002", "cli").await.unwrap());

    let after = store.dump_all_text().await.unwrap();
    for secret in &secrets[..4] {
        let hits: Vec<_> = after.iter().filter(|(_, row)| row.contains(secret.as_str())).collect();
        assert!(hits.is_empty(), "{secret} survived forget: {hits:?}");
    }
    for secret in &secrets[4..] {
        let hits: Vec<_> = after
            .iter()
            .filter(|(_, row)| row.contains(secret.as_str()) && !row.contains("crm-00000"))
            .collect();
        assert!(hits.is_empty(), "{secret} survived forget: {hits:?}");
    }
    // The bystander is untouched; anonymous counts survive.
    assert!(store.get_member("crm-00000").await.unwrap().is_some());
    assert!(after.iter().any(|(_, row)| row.contains("oOPENID00000xyz")));
    assert_eq!(store.member_counts().await.unwrap().total, 1);
    let backlog = store.backlog().await.unwrap();
    assert_eq!(count(&backlog, SendStatus::Sent), 2, "the forgotten member's sent row counts");
    assert_eq!(count(&backlog, SendStatus::Skipped), 1, "their pending row never goes out");
    let later = store.claim_due("x", t0() + Duration::days(2), Duration::minutes(5), 10);
    assert!(later.await.unwrap().is_empty());
    let log = store.audit_log(10).await.unwrap();
    assert_eq!(log[1].action, "forget");
    assert_eq!(log[1].target, format!("member #{}", ids[1]));
}

/// A planner inserting ledger rows while members are forgotten never leaves a
/// row with a forgotten member's rendered text (on PostgreSQL the ledger has no
/// foreign key: an advisory lock orders the two).
async fn forget_races_planner_inserts(db: &TestDb) {
    let ids = add_members(&db.store, 24).await;
    let victims: Vec<(usize, i64)> = ids.iter().copied().enumerate().skip(4).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let planner = db.store.lead_planner("race", t0(), t0() + Duration::hours(1)).await.unwrap();
    let mut inserters = Vec::new();
    for writer in 0..2 {
        let mark = if writer == 1 { planner.clone() } else { None };
        let store = db.store.clone();
        let stop = stop.clone();
        let victims = victims.clone();
        inserters.push(tokio::spawn(async move {
            let mut round = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<NewSend> = victims
                    .iter()
                    .map(|&(n, id)| NewSend {
                        text: format!("secret-of-{n:05}"),
                        ..send("race", &format!("w{writer}-{round}"), id, t0())
                    })
                    .collect();
                // One writer is a planner whose mark predates every forget: its
                // inserts must notice the forgets too.
                match &mark {
                    Some(mark) => store.insert_planned(&batch, mark).await.expect("insert"),
                    None => store.insert_sends(&batch).await.expect("insert"),
                };
                round += 1;
            }
            round
        }));
    }
    // Forget the victims one by one while the inserts go on, each after the
    // inserters have written at least one more row for it.
    for &(n, id) in &victims {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let history = db.store.send_history(&[id], t0() - Duration::days(1)).await.unwrap();
            if history.len() >= 2 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no rows inserted for member {n}");
            tokio::task::yield_now().await;
        }
        assert!(db.store.delete_member(&format!("crm-{n:05}"), "cli").await.unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for inserter in inserters {
        assert!(inserter.await.unwrap() > 0);
    }
    let after = db.store.dump_all_text().await.unwrap();
    for &(n, _) in &victims {
        let secret = format!("secret-of-{n:05}");
        let hits: Vec<_> = after.iter().filter(|(_, row)| row.contains(&secret)).collect();
        assert!(hits.is_empty(), "{secret} survived forget: {hits:?}");
    }
    // Nothing was planned for the bystanders, and they are all still there.
    assert_eq!(db.store.member_counts().await.unwrap().total, 4);
}

async fn concurrent_inserts_keep_ledger_unique(db: &TestDb) {
    let ids = add_members(&db.store, 300).await;
    let keys = |writer: usize, round: usize| {
        let start = (writer * 37 + round * 53) % ids.len();
        (0..150).map(move |k| ((start + k) % 300, k % 2))
    };
    let mut expected = HashSet::new();
    for writer in 0..8 {
        for round in 0..5 {
            expected.extend(keys(writer, round).map(|(m, o)| (ids[m], o)));
        }
    }
    // Eight writers on their own pools insert overlapping batches of the same keys.
    let mut tasks = Vec::new();
    for writer in 0..8usize {
        let url = db.url.clone();
        let batches: Vec<Vec<NewSend>> = (0..5)
            .map(|round| {
                let mut batch: Vec<NewSend> = keys(writer, round)
                    .map(|(m, o)| send("race", &format!("occ-{o}"), ids[m], t0()))
                    .collect();
                if writer % 2 == 1 {
                    batch.reverse();
                }
                batch
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            let store = Store::connect(&url).await.expect("connect");
            let mut inserted = 0;
            for batch in batches {
                inserted += store.insert_sends(&batch).await.expect("insert");
            }
            store.close().await;
            inserted
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    let stored = count(&db.store.backlog().await.unwrap(), SendStatus::Pending);
    // Every key stored exactly once, and the writers' "new" counts add up to it.
    assert_eq!(stored, i64::try_from(expected.len()).unwrap());
    assert_eq!(total, u64::try_from(expected.len()).unwrap());
}

async fn concurrent_claimers_never_share_rows(db: &TestDb) {
    let ids = add_members(&db.store, 500).await;
    let sends: Vec<NewSend> = ids
        .iter()
        .zip(0i64..)
        .map(|(id, k)| send("claim", "o", *id, t0() - Duration::seconds(k)))
        .collect();
    assert_eq!(db.store.insert_sends(&sends).await.unwrap(), 500);
    let mut tasks = Vec::new();
    for claimer in 0..6 {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move {
            let store = Store::connect(&url).await.expect("connect");
            let owner = format!("replica-{claimer}");
            let mut mine = Vec::new();
            loop {
                let batch =
                    store.claim_due(&owner, t0(), Duration::minutes(5), 17).await.expect("claim");
                if batch.is_empty() {
                    break;
                }
                let outcomes: Vec<Outcome> = batch
                    .iter()
                    .map(|c| Outcome::Sent { id: c.id, at: t0(), provider_id: None })
                    .collect();
                let recorded = store.record_outcomes(&owner, &outcomes).await.expect("record");
                assert_eq!(recorded, outcomes.len() as u64, "{owner} holds what it claimed");
                mine.extend(batch.into_iter().map(|c| c.id));
            }
            store.close().await;
            mine
        }));
    }
    let mut owner_of: HashMap<i64, usize> = HashMap::new();
    let mut total = 0;
    for (claimer, task) in tasks.into_iter().enumerate() {
        for id in task.await.unwrap() {
            total += 1;
            if let Some(other) = owner_of.insert(id, claimer) {
                panic!("row {id} claimed by both {other} and {claimer}");
            }
        }
    }
    assert_eq!(total, 500);
    let backlog = db.store.backlog().await.unwrap();
    assert_eq!(count(&backlog, SendStatus::Sent), 500);
}

async fn planner_lease_admits_one_replica(db: &TestDb) {
    let store = &db.store;
    let lease = Duration::minutes(15);
    let fresh = store.lead_planner("a:1", t0(), t0() + lease).await.unwrap().unwrap();
    let nothing = PlannerMark { forgotten: fresh.forgotten, ..PlannerMark::default() };
    assert_eq!(fresh, nothing, "a new database has planned nothing");
    assert_eq!(store.lead_planner("b:2", t0(), t0() + lease).await.unwrap(), None);
    // The holder renews; the other replica still waits.
    let later = t0() + Duration::minutes(5);
    assert!(store.lead_planner("a:1", later, later + lease).await.unwrap().is_some());
    assert_eq!(store.lead_planner("b:2", later, later + lease).await.unwrap(), None);
    // Releasing with a mark hands it to the next leader.
    let mark = PlannerMark {
        planned_until: Some(t0() + Duration::hours(1)),
        campaigns_hash: Some("digest".into()),
        ..nothing.clone()
    };
    store.finish_planning("b:2", Some(&PlannerMark::default())).await.unwrap();
    store.finish_planning("a:1", Some(&mark)).await.unwrap();
    assert_eq!(store.lead_planner("b:2", later, later + lease).await.unwrap(), Some(mark.clone()));
    // A leader that dies keeps the lease only until it expires.
    let expired = later + lease + Duration::seconds(1);
    assert_eq!(store.lead_planner("a:1", later, later + lease).await.unwrap(), None);
    assert_eq!(
        store.lead_planner("a:1", expired, expired + lease).await.unwrap(),
        Some(mark.clone())
    );
    // Releasing without a mark keeps the old one.
    store.finish_planning("a:1", None).await.unwrap();
    let unchanged = store.lead_planner("b:2", expired, expired + lease).await.unwrap();
    assert_eq!(unchanged, Some(mark.clone()));
    // Members imported while b plans: b's window is not recorded, the next tick
    // plans every member from now.
    store.upsert_members(&[(member(1), None)]).await.unwrap();
    store.finish_planning("b:2", Some(&mark)).await.unwrap();
    let after_import = store.lead_planner("c:3", expired, expired + lease).await.unwrap().unwrap();
    assert_eq!(after_import.planned_until, None, "new members are planned from now");
    assert_eq!(after_import.generation, mark.generation + 1);
    let replanned = PlannerMark { planned_until: mark.planned_until, ..after_import.clone() };
    store.finish_planning("c:3", Some(&replanned)).await.unwrap();
    // Upserting the same member again changes nothing, so the mark stays.
    store.upsert_members(&[(member(1), None)]).await.unwrap();
    let same = store.lead_planner("c:3", expired, expired + lease).await.unwrap();
    assert_eq!(same, Some(replanned));
}

/// The planner's inserts go in without per-row guards while they can; a key that
/// is already in the ledger (in any chunk of the call) is still skipped, not an
/// error, and every new row goes in.
async fn planned_inserts_skip_present_keys(db: &TestDb) {
    let store = &db.store;
    let ids = add_members(store, 12_000).await;
    let mark = store.lead_planner("p:1", t0(), t0() + Duration::hours(1)).await.unwrap().unwrap();
    let rows: Vec<NewSend> = ids.iter().map(|&id| send("spring", "2028-03-01", id, t0())).collect();
    // The last 2 000 first: in the full call they fill its second chunk of 10 000.
    assert_eq!(store.insert_planned(&rows[10_000..], &mark).await.unwrap(), 2_000);
    assert_eq!(store.insert_planned(&rows, &mark).await.unwrap(), 10_000);
    assert_eq!(store.insert_planned(&rows, &mark).await.unwrap(), 0, "twice is a no-op");
    // A chunk mixing present and new keys keeps the present ones as they were.
    let mut mixed = vec![send("spring", "2028-03-02", ids[0], t0())];
    mixed.push(NewSend { text: "changed".into(), ..rows[1].clone() });
    assert_eq!(store.insert_planned(&mixed, &mark).await.unwrap(), 1);
    let history = store.send_history(&[ids[0], ids[1]], t0() - Duration::days(1)).await.unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(store.backlog().await.unwrap(), vec![(SendStatus::Pending, 12_001)]);
    let texts = store.dump_all_text().await.unwrap();
    assert!(!texts.iter().any(|(_, row)| row.contains("changed")), "a present row was rewritten");
}

/// A batch mixing campaigns, occurrences, channels, languages, variants and
/// statuses keeps each row's own values, across statement boundaries (SQLite
/// binds each distinct tuple of those columns once per statement and joins the
/// rows to it by index).
async fn ledger_rows_keep_their_columns(db: &TestDb) {
    let store = &db.store;
    let ids = add_members(store, 40).await;
    let mut rows = Vec::new();
    for (i, &member_id) in ids.iter().enumerate() {
        for j in 0..15 {
            let k = i * 15 + j;
            rows.push(NewSend {
                campaign_id: format!("c{}", k % 3),
                occurrence: format!("2028-03-{:02}", 1 + j),
                member_id,
                due_at: t0() + Duration::minutes(k as i64),
                channel: ["wechat-main", "webhook"][k % 2].into(),
                lang: ["cmn-Hans", "yue-Hant", "wuu-Hans", "en"][k % 4].into(),
                variant: ["A", "B", "C"][(k / 5) % 3].into(),
                text: format!("row {k}"),
                status: if k % 7 == 0 { SendStatus::Holdout } else { SendStatus::Pending },
                reason: None,
            });
        }
    }
    assert_eq!(store.insert_sends(&rows).await.unwrap(), 600);
    let backlog = store.backlog().await.unwrap();
    assert_eq!(count(&backlog, SendStatus::Holdout), 86);
    assert_eq!(count(&backlog, SendStatus::Pending), 514);
    let history = store.send_history(&ids, t0() - Duration::days(1)).await.unwrap();
    assert_eq!(history.len(), 600);
    for entry in &history {
        let k = (entry.due_at - t0()).num_minutes() as usize;
        let row = &rows[k];
        assert_eq!(
            (entry.member_id, entry.campaign_id.as_str(), entry.occurrence.as_str()),
            (row.member_id, row.campaign_id.as_str(), row.occurrence.as_str()),
            "row {k}"
        );
        assert_eq!(entry.holdout, row.status == SendStatus::Holdout, "row {k}");
    }
    let mut pending = 0;
    for &member_id in &ids {
        for sent in store.upcoming_sends(member_id, 100).await.unwrap() {
            let k = (sent.due_at - t0()).num_minutes() as usize;
            let row = &rows[k];
            assert_eq!(
                (sent.campaign_id.as_str(), sent.channel.as_str(), sent.lang.as_str()),
                (row.campaign_id.as_str(), row.channel.as_str(), row.lang.as_str()),
                "row {k}"
            );
            assert_eq!((sent.variant.as_str(), sent.status), (row.variant.as_str(), row.status));
            pending += 1;
        }
    }
    assert_eq!(pending, 514);
}

/// SQLite's migration 0004 rebuilds the ledger (its key leads with the member,
/// no foreign key to `members`, no `sends_member`): every row keeps every value,
/// and the key still keeps the ledger unique.
#[tokio::test]
async fn sqlite_ledger_rebuild_keeps_rows() {
    let dir = tempfile::tempdir().unwrap();
    let before = dir.path().join("migrations");
    std::fs::create_dir(&before).unwrap();
    for entry in std::fs::read_dir("migrations/sqlite").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0004" {
            std::fs::copy(&path, before.join(name)).unwrap();
        }
    }
    let url = format!("sqlite:{}?mode=rwc", dir.path().join("old.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(before.as_path()).await.unwrap().run(&pool).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO members (id, external_id) VALUES (1, 'crm-1'), (2, 'crm-2');
         INSERT INTO sends (campaign_id, occurrence, member_id, due_at, channel, lang, variant,
                            text, status, attempts, next_attempt_at, provider_message_id, sent_at)
         VALUES ('autumn', '2027-09-14', 1, 10, 'wechat', 'cmn-Hans', 'A', 'hi', 'sent', 1, 10,
                 'msg-1', 12),
                ('autumn', '2027-09-14', 2, 20, 'wechat', 'yue-Hant', 'B', 'nei hou', 'pending',
                 0, 20, NULL, NULL),
                ('autumn', '2027-09-14', NULL, 30, 'wechat', 'cmn-Hans', 'A', NULL, 'skipped',
                 0, 30, NULL, NULL);",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = Store::connect_unmigrated(&url).await.unwrap();
    let ledger = |dump: Vec<(String, String)>| -> Vec<String> {
        dump.into_iter().filter(|(table, _)| table == "sends").map(|(_, row)| row).collect()
    };
    let old = ledger(store.dump_all_text().await.unwrap());
    assert_eq!(old.len(), 3);
    store.migrate().await.unwrap();
    assert_eq!(ledger(store.dump_all_text().await.unwrap()), old);
    let again = send("autumn", "2027-09-14", 2, t0());
    assert_eq!(store.insert_sends(&[again]).await.unwrap(), 0, "the key is still unique");
    assert_eq!(store.insert_sends(&[send("spring", "2028-03-01", 2, t0())]).await.unwrap(), 1);
    store.close().await;

    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sends' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(indexes, ["sends_claimed", "sends_key", "sends_pending"]);
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pragma_foreign_key_list('sends')")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(keys, 0);
    pool.close().await;
}

/// On PostgreSQL the planner's insert trusts its mark: while no member has been
/// forgotten since the mark was read, rows go in without a probe of `members`
/// (the caller read its members after the mark); once one has, each row's member
/// is checked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_planned_inserts_check_members_only_after_a_forget() {
    let Some(db) = TestDb::postgres().await.expect("postgres") else { return };
    let ids = add_members(&db.store, 2).await;
    let mark = db.store.lead_planner("p:1", t0(), t0() + Duration::hours(1)).await.unwrap();
    let mark = mark.unwrap();
    assert_eq!(mark.forgotten, Some(0));
    let unknown = send("autumn", "2027-09-14", 999_999, t0());
    assert_eq!(
        db.store.insert_planned(std::slice::from_ref(&unknown), &mark).await.unwrap(),
        1,
        "unchecked"
    );
    assert!(db.store.delete_member("crm-00001", "cli").await.unwrap());
    let other = NewSend { member_id: 999_998, ..unknown };
    assert_eq!(db.store.insert_planned(&[other], &mark).await.unwrap(), 0, "checked");
    let fresh = db.store.lead_planner("p:1", t0(), t0() + Duration::hours(1)).await.unwrap();
    assert_eq!(fresh.unwrap().forgotten, Some(1), "a forget moves the count");
    let kept = send("autumn", "2027-09-14", ids[0], t0());
    assert_eq!(db.store.insert_planned(&[kept], &mark).await.unwrap(), 1);
}

/// PostgreSQL plans each claim from the statistics of the ledger and of the
/// members: a burst into a new database must leave them current, or every claim
/// reads and sorts every pending row (a bitmap scan and a sort instead of a walk
/// of `sends_pending`) or hash-joins both whole tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_ledger_statistics_follow_a_burst() {
    let Some(db) = TestDb::postgres().await.expect("postgres") else { return };
    let ids = add_members(&db.store, 20_000).await;
    let due = t0();
    let sends: Vec<NewSend> = ids.iter().map(|id| send("burst", "2026-11-22", *id, due)).collect();
    assert_eq!(db.store.insert_sends(&sends).await.unwrap(), 20_000);

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    for table in ["members", "sends"] {
        let rows: f32 =
            sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = $1::regclass")
                .bind(table)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert!(rows > 15_000.0, "{table} was analyzed after the burst (reltuples {rows})");
    }
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT id FROM sends WHERE status = 'pending' AND due_at <= $1 \
         ORDER BY due_at LIMIT 500 FOR UPDATE SKIP LOCKED",
    )
    .bind(due)
    .fetch_all(&pool)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("Index Scan using sends_pending"), "the claim walks the index:\n{plan}");
    assert!(!plan.contains("Sort"), "the claim sorts nothing:\n{plan}");
    pool.close().await;
    db.cleanup().await.expect("cleanup");
}

async fn consent_changes_by_event_time_and_outlives_imports(db: &TestDb) {
    let store = &db.store;
    let id = store.upsert_resolved(&[v1(member(1))]).await.unwrap()[0].id;
    let opted_out = |at| async move {
        store.get_member("crm-00001").await.unwrap().unwrap().member.opted_out_at == at
    };
    let unsubscribed = t0();
    assert!(store.set_consent(id, Consent::OptedOut, unsubscribed).await.unwrap());
    // An older subscribe delivered late (WeChat retries, a replica's backlog).
    assert!(!store.set_consent(id, Consent::OptedIn, t0() - Duration::hours(1)).await.unwrap());
    assert!(opted_out(Some(unsubscribed)).await, "the newer unsubscribe stands");
    // The CRM's nightly file knows nothing of the unsubscribe: it does not undo it.
    store.upsert_resolved(&[v1(member(1))]).await.unwrap();
    assert!(opted_out(Some(unsubscribed)).await, "an import without an opt-out keeps it");
    // A newer subscribe opts back in; an import's own opt-out still applies.
    assert!(store.set_consent(id, Consent::OptedIn, t0() + Duration::hours(1)).await.unwrap());
    assert!(opted_out(None).await);
    let mut refused = member(1);
    refused.opted_out_at = Some(t0() + Duration::hours(2));
    store.upsert_resolved(&[v1(refused)]).await.unwrap();
    assert!(opted_out(Some(t0() + Duration::hours(2))).await, "an import can opt out");
    // A member WeChat never spoke about follows the CRM file both ways.
    let mut other = member(2);
    other.opted_out_at = Some(t0());
    store.upsert_resolved(&[v1(other)]).await.unwrap();
    store.upsert_resolved(&[v1(member(2))]).await.unwrap();
    let two = store.get_member("crm-00002").await.unwrap().unwrap();
    assert_eq!(two.member.opted_out_at, None);
}

async fn callback_signatures_are_accepted_once(db: &TestDb) {
    let store = &db.store;
    // A second handle on the same database stands for a second replica.
    let replica = Store::connect(&db.url).await.unwrap();
    let expires = t0() + Duration::minutes(5);
    assert!(store.claim_callback_signature("sig-a", expires, t0()).await.unwrap());
    assert!(!store.claim_callback_signature("sig-a", expires, t0()).await.unwrap(), "replayed");
    assert!(
        !replica.claim_callback_signature("sig-a", expires, t0()).await.unwrap(),
        "replayed to another replica"
    );
    assert!(replica.claim_callback_signature("sig-b", expires, t0()).await.unwrap());
    // Released (the event could not be applied): the sender's retry is accepted.
    store.release_callback_signature("sig-b").await.unwrap();
    assert!(store.claim_callback_signature("sig-b", expires, t0()).await.unwrap());
    // Past its expiry an entry is dropped on the way (the timestamp check refuses
    // such a request before it gets here).
    let later = expires + Duration::seconds(1);
    assert!(store.claim_callback_signature("sig-a", later, later).await.unwrap());
}
