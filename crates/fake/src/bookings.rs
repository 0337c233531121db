//! Generated, realistic SavvyCal bookings for the fake API.
//!
//! The `demo` command, the integration tests and the benchmarks need a booking history that looks
//! like a real account's — a couple of years of events, some canceled, some the organizer declined,
//! some still upcoming, attendees with non-ASCII names and custom-field answers — without an
//! account. Output is deterministic for a given seed (and day), so failures reproduce.

use jiff::Timestamp;
use serde::Serialize;

/// How far back the history of a large enough account reaches.
const HISTORY_SECS: i64 = 730 * 86_400;

/// Largest gap between two consecutive bookings, so small histories still end near now and mix
/// past with upcoming starts.
const MAX_STEP_SECS: i64 = 12 * 3_600;

/// Crockford's base-32 alphabet (no I, L, O, U), as used by SavvyCal's ULID-like ids.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `n` SavvyCal event objects as compact JSON, oldest `created_at` first.
///
/// Event `i` is determined by `(seed, i)` and today's date (UTC): ids are unique, `created_at`
/// strictly increases with the index and the history ends before today, while `start_at` lies
/// days after `created_at` — so a history of a few thousand events holds both past and upcoming
/// starts. About 15 % are canceled and about 5 % declined by the organizer ("not attending").
pub fn generate_bookings(n: usize, seed: u64) -> Vec<String> {
    generate_bookings_at(n, seed, Timestamp::now())
}

/// [`generate_bookings`] as if run at `now`: fully deterministic in `(n, seed, now's UTC date)`.
pub fn generate_bookings_at(n: usize, seed: u64, now: Timestamp) -> Vec<String> {
    let today = now.as_second().div_euclid(86_400) * 86_400;
    let count = i64::try_from(n).unwrap_or(i64::MAX).max(1);
    let step = (HISTORY_SECS / count).clamp(1, MAX_STEP_SECS);
    let first = today.saturating_sub(step.saturating_mul(count));
    let organizer_tz = TIME_ZONES[(mix(seed, 0, Tag::Organizer) % 3) as usize];
    (0..n)
        .map(|index| {
            let offset = step.saturating_mul(i64::try_from(index).unwrap_or(i64::MAX));
            let created = first.saturating_add(offset);
            generate_one(seed, index as u64, created, step, organizer_tz)
        })
        .collect()
}

/// Distinct id spaces, so an event and its attendees never share an id.
#[derive(Clone, Copy)]
enum Tag {
    Event = 1,
    Attendee = 2,
    Link = 3,
    Rng = 4,
    Organizer = 5,
}

/// splitmix64's finalizer: a bijection on `u64` with good avalanche.
fn fmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A well-mixed value of `(seed, index, tag)`.
fn mix(seed: u64, index: u64, tag: Tag) -> u64 {
    fmix(fmix(seed ^ (tag as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add(index))
}

/// A 26-character Crockford base-32 id, unique per `(seed, index, tag)` for a fixed seed and tag:
/// the low 64 bits are a bijection of the index.
fn ulid_like(seed: u64, index: u64, tag: Tag) -> String {
    let key = fmix(seed.wrapping_add(tag as u64));
    let low = fmix(index.wrapping_add(key));
    let high = mix(seed, index, tag);
    let value = (u128::from(high) << 64) | u128::from(low);
    (0..26).rev().map(|i| char::from(CROCKFORD[((value >> (i * 5)) & 31) as usize])).collect()
}

/// RFC 3339 in UTC with a `Z`, second precision (SavvyCal's format).
fn rfc3339(secs: i64) -> String {
    Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH).to_string()
}

/// `(display_name, first_name, last_name, email local part)`.
const PEOPLE: &[(&str, &str, &str, &str)] = &[
    ("Zoë Åkesson", "Zoë", "Åkesson", "zoe.akesson"),
    ("Corey Haines", "Corey", "Haines", "corey"),
    ("José Müller", "José", "Müller", "jose.muller"),
    ("Priya Patel", "Priya", "Patel", "priya.patel"),
    ("李雷", "雷", "李", "li.lei"),
    ("Hannah Schmidt", "Hannah", "Schmidt", "hannah"),
    ("Ægir Þórsson", "Ægir", "Þórsson", "aegir"),
    ("Kwame Mensah", "Kwame", "Mensah", "kwame.mensah"),
    ("Chloé Dubois", "Chloé", "Dubois", "chloe.dubois"),
    ("Mary-Jane O'Brien", "Mary-Jane", "O'Brien", "mj.obrien"),
    ("Oğuz Yılmaz", "Oğuz", "Yılmaz", "oguz"),
    ("Emily Chen", "Emily", "Chen", "emily.chen"),
    ("Nguyễn Văn An", "An", "Nguyễn", "an.nguyen"),
    ("Tom Baker", "Tom", "Baker", "tom"),
    ("Олег Петров", "Олег", "Петров", "oleg.petrov"),
    ("Fatima Al-Sayed", "Fatima", "Al-Sayed", "fatima"),
];

const DOMAINS: &[&str] = &["example.com", "example.org", "example.net", "mail.example"];

const TIME_ZONES: &[&str] = &[
    "America/Chicago",
    "Europe/Berlin",
    "Europe/Stockholm",
    "Asia/Shanghai",
    "Atlantic/Reykjavik",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Europe/London",
];

/// `(name, slug, usual duration in minutes)`.
const LINKS: &[(&str, &str, u32)] = &[
    ("30 min", "chat", 30),
    ("Intro call", "intro", 15),
    ("Product demo", "demo", 45),
    ("Office hours", "office-hours", 60),
    ("Strategy session", "strategy", 90),
];

const TOPICS: &[&str] = &[
    "Webhooks",
    "Pricing question",
    "Onboarding",
    "Integración con el CRM",
    "Partnership 🤝",
    "Feedback on the beta",
    "Réunion de lancement",
    "Migrating from \"the old tool\"",
];

const CANCEL_REASONS: &[&str] =
    &["Something came up", "Need to reschedule", "Conflit d'horaire", "Double-booked, sorry!"];

#[derive(Serialize)]
struct Event<'a> {
    id: String,
    state: &'static str,
    summary: String,
    description: &'static str,
    additional_info: Option<&'static str>,
    location: Option<&'static str>,
    created_at: String,
    start_at: String,
    end_at: String,
    duration: u32,
    canceled_at: Option<String>,
    cancel_reason: Option<&'static str>,
    rescheduled_at: Option<String>,
    reschedule_reason: Option<&'static str>,
    original_start_at: String,
    original_end_at: String,
    conferencing: Option<Conferencing>,
    link: Link,
    poll: Option<()>,
    scope: Option<()>,
    organizer: &'a Person,
    scheduler: &'a Person,
    attendees: Vec<&'a Person>,
    payment: Option<()>,
    metadata: Empty,
    url: String,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct Conferencing {
    #[serde(rename = "type")]
    kind: &'static str,
    join_url: String,
    meeting_id: Option<String>,
    instructions: Option<&'static str>,
}

#[derive(Serialize)]
struct Link {
    id: String,
    name: &'static str,
    slug: &'static str,
}

#[derive(Serialize)]
struct Person {
    id: String,
    display_name: &'static str,
    first_name: &'static str,
    last_name: &'static str,
    email: String,
    phone_number: Option<&'static str>,
    time_zone: &'static str,
    response_status: &'static str,
    is_organizer: bool,
    is_scheduler: bool,
    fields: Vec<Field>,
}

#[derive(Serialize)]
struct Field {
    id: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    label: &'static str,
    value: &'static str,
}

fn pick<T: Copy>(rng: &mut fastrand::Rng, items: &[T]) -> T {
    items[rng.usize(..items.len())]
}

fn guest(rng: &mut fastrand::Rng, seed: u64, id_index: u64, scheduler: bool) -> Person {
    let (display_name, first_name, last_name, local) = pick(rng, PEOPLE);
    let email = match rng.u32(0..3) {
        0 => format!("{local}{}@{}", rng.u32(1..100), pick(rng, DOMAINS)),
        _ => format!("{local}@{}", pick(rng, DOMAINS)),
    };
    let fields = if scheduler && rng.u32(0..10) < 7 {
        vec![Field {
            id: "field_1",
            kind: "text",
            label: "What would you like to talk about?",
            value: pick(rng, TOPICS),
        }]
    } else {
        Vec::new()
    };
    Person {
        id: format!("attendee_{}", ulid_like(seed, id_index, Tag::Attendee)),
        display_name,
        first_name,
        last_name,
        email,
        phone_number: (rng.u32(0..10) == 0).then_some("+46 70 123 45 67"),
        time_zone: pick(rng, TIME_ZONES),
        response_status: "accepted",
        is_organizer: false,
        is_scheduler: scheduler,
        fields,
    }
}

fn generate_one(seed: u64, index: u64, created: i64, step: i64, organizer_tz: &'static str) -> String {
    let mut rng = fastrand::Rng::with_seed(mix(seed, index, Tag::Rng));
    let created = created + rng.i64(0..=step * 3 / 4);

    // Booked for a half-hour slot in (European/American) business hours, 1–60 days ahead.
    let lead_days = if rng.u32(0..10) < 7 { rng.i64(1..=14) } else { rng.i64(15..=60) };
    let slot = rng.i64(26..=45) * 1_800; // 13:00–22:30 UTC
    let start = (created.div_euclid(86_400) + lead_days) * 86_400 + slot;
    let (link_name, link_slug, usual_minutes) = pick(&mut rng, LINKS);
    let link_index = LINKS.iter().position(|link| link.1 == link_slug).unwrap_or(0) as u64;
    let duration = if rng.u32(0..10) == 0 { pick(&mut rng, &[15, 30, 45, 60, 90]) } else { usual_minutes };
    let end = start + i64::from(duration) * 60;

    let canceled = rng.u32(0..100) < 15;
    let declined = rng.u32(0..100) < 5;
    let canceled_at = canceled.then(|| created + rng.i64(0..=start - created - 60));
    let cancel_reason = canceled.then(|| pick(&mut rng, CANCEL_REASONS));

    let person_base = index * 4;
    let organizer = Person {
        id: format!("attendee_{}", ulid_like(seed, person_base, Tag::Attendee)),
        display_name: "Demo User",
        first_name: "Demo",
        last_name: "User",
        email: "demo@example.com".to_owned(),
        phone_number: None,
        time_zone: organizer_tz,
        response_status: if declined { "declined" } else { "accepted" },
        is_organizer: true,
        is_scheduler: false,
        fields: Vec::new(),
    };
    let scheduler = guest(&mut rng, seed, person_base + 1, true);
    let extra = (rng.u32(0..4) == 0).then(|| guest(&mut rng, seed, person_base + 2, false));
    let mut attendees = Vec::with_capacity(3);
    if rng.u32(0..100) < 85 {
        attendees.push(&organizer);
    }
    attendees.push(&scheduler);
    attendees.extend(extra.as_ref());

    let conferencing = match rng.u32(0..10) {
        0..4 => {
            let meeting = rng.u64(10_000_000_000..100_000_000_000).to_string();
            Some(Conferencing {
                kind: "zoom",
                join_url: format!("https://zoom.us/j/{meeting}"),
                meeting_id: Some(meeting),
                instructions: None,
            })
        }
        4..7 => {
            let code: String = (0..10).map(|_| char::from(b'a' + rng.u8(0..26))).collect();
            Some(Conferencing {
                kind: "google_meet",
                join_url: format!("https://meet.google.com/{}-{}-{}", &code[..3], &code[3..7], &code[7..]),
                meeting_id: None,
                instructions: None,
            })
        }
        _ => None,
    };

    let ulid = ulid_like(seed, index, Tag::Event);
    let event = Event {
        id: format!("event_{ulid}"),
        state: if canceled { "canceled" } else { "confirmed" },
        summary: format!("{link_name} with {}", scheduler.first_name),
        description: "",
        additional_info: None,
        location: None,
        created_at: rfc3339(created),
        start_at: rfc3339(start),
        end_at: rfc3339(end),
        duration,
        canceled_at: canceled_at.map(rfc3339),
        cancel_reason,
        rescheduled_at: None,
        reschedule_reason: None,
        original_start_at: rfc3339(start),
        original_end_at: rfc3339(end),
        conferencing,
        link: Link { id: format!("link_{}", ulid_like(seed, link_index, Tag::Link)), name: link_name, slug: link_slug },
        poll: None,
        scope: None,
        organizer: &organizer,
        scheduler: &scheduler,
        attendees,
        payment: None,
        metadata: Empty {},
        url: format!("https://savvycal.com/events/{ulid}"),
    };
    // Serializing plain structs of strings, numbers and options cannot fail.
    serde_json::to_string(&event).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::Value;

    use super::*;

    #[test]
    fn deterministic_unique_ordered_and_varied() {
        let now: Timestamp = "2026-03-10T12:00:00Z".parse().unwrap();
        let events = generate_bookings_at(2_000, 7, now);
        assert_eq!(events, generate_bookings_at(2_000, 7, now));
        assert_ne!(events, generate_bookings_at(2_000, 8, now));

        let parsed: Vec<Value> = events.iter().map(|e| serde_json::from_str(e).unwrap()).collect();
        let ids: HashSet<&str> = parsed.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 2_000);
        for id in &ids {
            let ulid = id.strip_prefix("event_").unwrap();
            assert_eq!(ulid.len(), 26);
            assert!(ulid.bytes().all(|b| CROCKFORD.contains(&b)));
        }

        let ts = |e: &Value, key: &str| e[key].as_str().unwrap().parse::<Timestamp>().unwrap();
        let first_created = ts(&parsed[0], "created_at");
        assert!(now.as_second() - first_created.as_second() > 700 * 86_400);
        let mut previous = None;
        let (mut past, mut upcoming, mut canceled, mut declined, mut non_ascii) = (0, 0, 0, 0, 0);
        for event in &parsed {
            let created = ts(event, "created_at");
            let start = ts(event, "start_at");
            assert!(created < now);
            assert!(start > created);
            assert!(previous.is_none_or(|p| p < created));
            previous = Some(created);
            if start < now {
                past += 1;
            } else {
                upcoming += 1;
            }
            if event["state"] == "canceled" {
                canceled += 1;
                assert!(event["canceled_at"].is_string());
                assert!(event["cancel_reason"].is_string());
            } else {
                assert_eq!(event["state"], "confirmed");
                assert!(event["canceled_at"].is_null());
            }
            if event["organizer"]["response_status"] == "declined" {
                declined += 1;
            }
            let attendees = event["attendees"].as_array().unwrap().len();
            assert!((1..=3).contains(&attendees));
            if !event["scheduler"]["display_name"].as_str().unwrap().is_ascii() {
                non_ascii += 1;
            }
        }
        assert!(past > 1_000 && upcoming > 10, "{past} past, {upcoming} upcoming");
        assert!((200..400).contains(&canceled), "{canceled} canceled");
        assert!((50..160).contains(&declined), "{declined} declined");
        assert!(non_ascii > 200, "{non_ascii} non-ASCII schedulers");
    }

    #[test]
    fn small_histories_still_mix_past_and_upcoming() {
        let now = Timestamp::now();
        let events = generate_bookings(50, 1);
        assert_eq!(events.len(), 50);
        let starts: Vec<Timestamp> = events
            .iter()
            .map(|e| {
                let v: Value = serde_json::from_str(e).unwrap();
                v["start_at"].as_str().unwrap().parse().unwrap()
            })
            .collect();
        assert!(starts.iter().any(|s| *s < now));
        assert!(starts.iter().any(|s| *s >= now));
        assert!(generate_bookings(0, 1).is_empty());
    }
}
