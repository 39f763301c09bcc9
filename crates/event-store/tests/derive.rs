//! The derives: JSON shape, dispatch, and compile errors for misuse (trybuild).

use event_store::{Error, Event, Events};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Event, Serialize, Deserialize, Debug, PartialEq, Clone)]
#[event(namespace = "cmp-inventory", rename = "ItemAdded")]
struct Added {
    sku: String,
    quantity: u32,
}

#[derive(Event, Serialize, Deserialize, Debug, PartialEq, Clone)]
#[event(namespace = "cmp-inventory")]
#[serde(deny_unknown_fields)]
struct Removed {
    sku: String,
}

#[derive(Event, Serialize, Deserialize, Debug, PartialEq, Clone)]
#[event(namespace = "cmp-inventory", type = "Cleared")]
struct Reset {}

/// The original event store's attribute spelling.
#[derive(Event, Serialize, Deserialize, Debug, PartialEq, Clone)]
#[event_store(namespace = "cmp-legacy", rename = "ThingHappened")]
struct Legacy {
    n: i64,
}

/// Personal data: sealed with the subject's key (`event_store::erasure`).
#[derive(Event, Serialize, Deserialize, Debug, PartialEq, Clone)]
#[event(namespace = "accounts", subject = "user_id")]
struct Registered {
    user_id: String,
    #[event(personal)]
    email: Option<String>,
    #[event(personal)]
    #[serde(rename = "fullName", default, skip_serializing_if = "Option::is_none")]
    full_name: Option<String>,
    plan: String,
}

#[derive(Events, Debug, PartialEq, Clone)]
enum Inventory {
    Added(Added),
    Removed(Removed),
    Reset(Reset),
}

#[test]
fn personal_fields_and_their_subject() {
    assert_eq!(Registered::PERSONAL, &["email", "fullName"]);
    assert_eq!(Registered::SUBJECT, Some("user_id"));
    assert!(Added::PERSONAL.is_empty());
    assert_eq!(Added::SUBJECT, None);
}

/// An event's personal fields sealed, opened, and erased once the key is gone.
#[test]
fn personal_fields_seal_open_and_erase() {
    use event_store::erasure::{DataKey, open_fields, seal_fields, subject_of};
    let event = Registered {
        user_id: "user-7".into(),
        email: Some("ada@example.com".into()),
        full_name: Some("Ada Lovelace".into()),
        plan: "pro".into(),
    };
    let mut data =
        event_store::encode_event(&event, Registered::NAMESPACE, Registered::TYPE).unwrap();
    let subject = subject_of(&data, Registered::SUBJECT.unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(subject, "user-7");
    let kind = (
        Registered::NAMESPACE,
        Registered::TYPE,
        event_store::Uuid::now_v7(),
    );
    let key = DataKey::generate();
    seal_fields(&mut data, kind, &subject, Registered::PERSONAL, &key);
    let text = data.to_string();
    assert!(
        !text.contains("ada@") && !text.contains("Lovelace"),
        "{text}"
    );
    assert!(
        text.contains("pro") && text.contains("user-7"),
        "the rest stays plain: {text}"
    );
    // Sealing twice changes nothing.
    let sealed = data.clone();
    seal_fields(&mut data, kind, &subject, Registered::PERSONAL, &key);
    assert_eq!(data, sealed);

    let mut opened = sealed.clone();
    open_fields(
        &mut opened,
        kind,
        &subject,
        Registered::PERSONAL,
        Some(&key),
    )
    .unwrap();
    let back: Registered = serde_json::from_value(opened).unwrap();
    assert_eq!(back, event);

    // Forgotten: no key, the fields read as None; the rest is intact.
    let mut erased = sealed.clone();
    open_fields(&mut erased, kind, &subject, Registered::PERSONAL, None).unwrap();
    let back: Registered = serde_json::from_value(erased).unwrap();
    assert_eq!(
        (back.email, back.full_name, back.plan),
        (None, None, "pro".to_owned())
    );

    // Another subject's key, or a value moved to the other field: an error, never garbage.
    let mut wrong = sealed.clone();
    let e = open_fields(
        &mut wrong,
        kind,
        &subject,
        Registered::PERSONAL,
        Some(&DataKey::generate()),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Unauthentic { .. }), "{e}");
    let mut moved = sealed;
    moved["fullName"] = moved["email"].clone();
    let e = open_fields(&mut moved, kind, &subject, Registered::PERSONAL, Some(&key)).unwrap_err();
    assert!(e.to_string().contains("fullName"), "{e}");
}

#[test]
fn struct_consts() {
    assert_eq!(
        (Added::NAMESPACE, Added::TYPE),
        ("cmp-inventory", "ItemAdded")
    );
    assert_eq!(Removed::TYPE, "Removed");
    assert_eq!(Reset::TYPE, "Cleared");
    assert_eq!(
        (Legacy::NAMESPACE, Legacy::TYPE),
        ("cmp-legacy", "ThingHappened")
    );
    assert_eq!(
        Legacy { n: 1 }.encode().unwrap(),
        json!({"n": 1, "event_namespace": "cmp-legacy", "event_type": "ThingHappened"})
    );
}

#[test]
fn json_keeps_namespace_and_type_beside_the_fields() {
    let e = Added {
        sku: "a".into(),
        quantity: 2,
    };
    assert_eq!(
        e.encode().unwrap(),
        json!({"sku": "a", "quantity": 2, "event_namespace": "cmp-inventory", "event_type": "ItemAdded"})
    );
    assert_eq!(
        Reset {}.encode().unwrap(),
        json!({"event_namespace": "cmp-inventory", "event_type": "Cleared"})
    );
}

#[test]
fn enum_dispatches_on_namespace_and_type() {
    let all: Vec<(&str, &str)> = Inventory::event_types()
        .iter()
        .map(|t| (t.namespace, t.name))
        .collect();
    assert_eq!(
        all,
        vec![
            ("cmp-inventory", "ItemAdded"),
            ("cmp-inventory", "Removed"),
            ("cmp-inventory", "Cleared")
        ]
    );
    for e in [
        Inventory::from(Added {
            sku: "x".into(),
            quantity: 1,
        }),
        Inventory::from(Removed { sku: "y".into() }),
        Inventory::Reset(Reset {}),
    ] {
        let data = e.encode().unwrap();
        let back = Inventory::decode(e.namespace(), e.event_type(), &data).unwrap();
        assert_eq!(back, e);
    }
    // deny_unknown_fields still decodes: the two keys are ignored.
    let data = json!({"sku": "z", "event_namespace": "cmp-inventory", "event_type": "Removed"});
    assert_eq!(
        Inventory::decode("cmp-inventory", "Removed", &data).unwrap(),
        Inventory::Removed(Removed { sku: "z".into() })
    );
}

#[test]
fn unknown_type_and_bad_data_are_clear_errors() {
    let err = Inventory::decode("cmp-inventory", "Exploded", &json!({})).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownEventType { namespace, event_type } if namespace == "cmp-inventory" && event_type == "Exploded")
    );
    assert_eq!(
        err.to_string(),
        "unknown event type `cmp-inventory.Exploded`"
    );
    let err = Inventory::decode("other", "ItemAdded", &json!({})).unwrap_err();
    assert!(matches!(err, Error::UnknownEventType { .. }));
    let err = Inventory::decode("cmp-inventory", "ItemAdded", &json!({"sku": 3})).unwrap_err();
    assert!(matches!(err, Error::Codec { .. }), "{err:?}");
    assert!(err.to_string().contains("cmp-inventory.ItemAdded"));
    assert!(Inventory::handles("cmp-inventory", "Removed"));
    assert!(!Inventory::handles("cmp-inventory", "Nope"));
}

#[test]
fn misuse_is_a_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
