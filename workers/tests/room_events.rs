//! Room events in the store writer, in process (no NATS): a topic or name event sets the
//! room's topic or name in stream order (within a batch and across batches, the last event
//! wins, whatever the service stored before), events are quiet (not unread) and no target
//! for edits; moderation events change no room text.

mod common;

use chatmesh_protocol::message::Payload;
use chatmesh_protocol::moderation::RoomEvent;
use chatmesh_protocol::service::*;
use chatmesh_workers::writer::{store_batch, Delivery};
use common::{create, payload, users, Local};

fn event(seq: u64, e: RoomEvent) -> Delivery {
    let p = Payload {
        event: Some(e),
        ..payload(&format!("evt-{seq}"), "ann", "")
    };
    Delivery {
        seq,
        message: Some(("r".to_owned(), p)),
    }
}

fn said(seq: u64, body: &str) -> Delivery {
    Delivery {
        seq,
        message: Some(("r".to_owned(), payload(&format!("m{seq}"), "ann", body))),
    }
}

/// The last topic and name event in stream order is what the room keeps; events are quiet.
#[tokio::test]
async fn topic_and_name_events_apply_in_stream_order() {
    let l = Local::new().await;
    users(&l, &["ann", "bob"]).await;
    create(&l, "r", RoomKind::Public, "ann").await;
    let join = RoomUserRequest {
        room: "r".into(),
        user: "bob".into(),
    };
    l.service.join(join).await.unwrap();
    let mut cp = 0;
    let batch = vec![
        said(1, "hello"),
        event(2, RoomEvent::Topic(Some("first".into()))),
        event(3, RoomEvent::Name(Some("Hall".into()))),
        event(4, RoomEvent::Topic(Some("second".into()))),
        event(
            5,
            RoomEvent::Ban {
                user: "eve".into(),
                reason: None,
            },
        ),
    ];
    store_batch(&l.model, &l.caches, 0, &mut cp, batch)
        .await
        .unwrap();
    assert_eq!(l.model.topic("r").await.unwrap().as_deref(), Some("second"));
    assert_eq!(
        l.model.room_name("r").await.unwrap().as_deref(),
        Some("Hall")
    );

    // The service stored a newer topic directly; the next event in order still decides.
    let set = SetTopicRequest {
        room: "r".into(),
        actor: "ann".into(),
        topic: Some("direct".into()),
    };
    l.service.room_topic(set).await.unwrap();
    let batch = vec![
        event(6, RoomEvent::Topic(None)),
        event(7, RoomEvent::Name(None)),
        said(8, "bye"),
    ];
    store_batch(&l.model, &l.caches, 0, &mut cp, batch)
        .await
        .unwrap();
    assert_eq!(l.model.topic("r").await.unwrap(), None);
    assert_eq!(l.model.room_name("r").await.unwrap(), None);

    // Two messages are unread for bob; the six events are not.
    let list = l
        .service
        .rooms_list(ListRoomsRequest {
            user: "bob".into(),
            after: None,
        })
        .await
        .unwrap();
    let r = list.rooms.iter().find(|r| r.room == "r").unwrap();
    assert_eq!((r.unread, r.last_seq), (2, 8));

    // No edit, reaction or reply targets an event.
    for change in [
        chatmesh_protocol::message::Change::Edit(2),
        chatmesh_protocol::message::Change::React(2),
    ] {
        let req = ChangeCheckRequest {
            room: "r".into(),
            user: "ann".into(),
            id: "x".into(),
            change,
            key: "👍".into(),
        };
        let err = l.service.change_check(req).await.unwrap_err();
        assert_eq!(
            err.code,
            chatmesh_protocol::ErrorCode::BadRequest,
            "{err:?}"
        );
    }
}
