//! The worker's tantivy index: its schema, writes (replace or remove a message's document),
//! commits with each partition's covered stream seq as payload, queries, and the move of a
//! partition's own index (the layout before one index per worker) into it. Everything here
//! blocks: [`super::Indexes`] calls it on blocking threads, one caller at a time.

use std::ops::Bound;
use std::path::Path;
use std::time::Instant;

use chatmesh_protocol::search::{SearchHit, SearchRequest, SearchResults};
use serde::Deserialize;
use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, Value, FAST, INDEXED, STORED, STRING, TEXT,
};
use tantivy::{
    Index, IndexReader, IndexWriter, Order, ReloadPolicy, Searcher, TantivyDocument, Term,
};

use super::{SearchError, IDLE_CLOSE, WRITER_MEMORY};

/// A message's document.
#[derive(Debug, Clone)]
pub struct Doc {
    pub room: String,
    pub from: String,
    pub ts: u64,
    pub body: String,
}

/// One change to the index, in stream order.
#[derive(Debug, Clone)]
pub enum Change {
    /// Message `seq` of partition `p` as sent: a document of its own. Added without looking
    /// for an older one when the partition's writes have not reached `seq` (the common case:
    /// a delete per message cost a term look-up in every segment at each commit); a
    /// redelivery replaces the document it wrote before.
    Add { p: u32, seq: u64, doc: Doc },
    /// Message `seq` of `room`: its document replaced (an edit) or removed (`None`: a
    /// delete, retention).
    Replace {
        room: String,
        seq: u64,
        doc: Option<Doc>,
    },
}

#[derive(Clone, Copy)]
struct Fields {
    seq: Field,
    room: Field,
    from: Field,
    ts: Field,
    body: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        seq: b.add_u64_field("seq", INDEXED | FAST | STORED),
        room: b.add_text_field("room", STRING | STORED),
        from: b.add_text_field("from", STRING | STORED),
        ts: b.add_u64_field("ts", INDEXED | FAST | STORED),
        body: b.add_text_field("body", TEXT | STORED),
    };
    (b.build(), fields)
}

/// Deletes the document of message `seq` of `room` (when the next commit applies deletes).
fn delete(writer: &IndexWriter, f: Fields, room: &str, seq: u64) -> Result<(), SearchError> {
    let term =
        |t: Term| -> Box<dyn Query> { Box::new(TermQuery::new(t, IndexRecordOption::Basic)) };
    let both = BooleanQuery::new(vec![
        (Occur::Must, term(Term::from_field_text(f.room, room))),
        (Occur::Must, term(Term::from_field_u64(f.seq, seq))),
    ]);
    writer
        .delete_query(Box::new(both))
        .map(|_| ())
        .map_err(fail("deleting a document"))
}

/// What a commit's payload says: the highest stream seq covered, per partition.
#[derive(Debug, Default, Deserialize)]
struct Covered {
    covered: Vec<u64>,
}

/// The worker's one index: every partition's documents. A document is a message: its room
/// and seq (seqs are a stream's, and a worker may serve several streams, one per region, whose
/// seqs overlap: a seq alone names a message only within its room).
pub struct MessageIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    writer: Option<IndexWriter>,
    /// Per partition, the highest stream seq written (committed or not), and committed.
    written: Vec<u64>,
    committed: Vec<u64>,
    /// Something was written since the last commit.
    dirty: bool,
    last_write: Instant,
}

fn fail(what: &'static str) -> impl FnOnce(tantivy::TantivyError) -> SearchError {
    move |source| SearchError::Index { what, source }
}

pub(super) fn io_fail(what: &'static str) -> impl FnOnce(std::io::Error) -> SearchError {
    move |e| SearchError::Index {
        what,
        source: tantivy::TantivyError::IoError(std::sync::Arc::new(e)),
    }
}

/// Opens (or creates) a tantivy index of the message schema in `dir`.
fn open_index(dir: &Path) -> Result<(Index, Fields), SearchError> {
    std::fs::create_dir_all(dir).map_err(io_fail("creating its folder"))?;
    let (schema, fields) = schema();
    let directory = MmapDirectory::open(dir).map_err(|e| SearchError::Index {
        what: "opening its folder",
        source: e.into(),
    })?;
    let index = Index::open_or_create(directory, schema).map_err(fail("opening"))?;
    Ok((index, fields))
}

impl MessageIndex {
    /// The index in `dir`, covering `partitions` partitions.
    pub fn open(dir: &Path, partitions: u32) -> Result<Self, SearchError> {
        let (index, fields) = open_index(dir)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(fail("opening a reader"))?;
        let payload = index
            .load_metas()
            .map_err(fail("reading its commit"))?
            .payload;
        let mut committed = payload
            .and_then(|p| serde_json::from_str::<Covered>(&p).ok())
            .unwrap_or_default()
            .covered;
        committed.resize(partitions as usize, 0);
        Ok(Self {
            index,
            reader,
            fields,
            writer: None,
            written: committed.clone(),
            committed,
            dirty: false,
            last_write: Instant::now(),
        })
    }

    /// Whether its writer is open.
    pub fn writing(&self) -> bool {
        self.writer.is_some()
    }

    /// The highest stream seq of partition `p` whose changes are committed.
    pub fn committed(&self, p: u32) -> u64 {
        self.committed.get(p as usize).copied().unwrap_or(0)
    }

    fn writer(&mut self) -> Result<&IndexWriter, SearchError> {
        if self.writer.is_none() {
            let w = self
                .index
                .writer_with_num_threads(1, WRITER_MEMORY)
                .map_err(fail("opening its writer"))?;
            self.writer = Some(w);
        }
        self.writer.as_ref().ok_or(SearchError::Cancelled)
    }

    /// Applies `changes` in order, and records each partition's `high` as covered once
    /// committed (0: covers nothing new, as for retention). A message at or below what its
    /// partition's writes reached (a redelivery) replaces its document: applying a change
    /// again is harmless.
    pub fn write(&mut self, high: &[u64], changes: Vec<Change>) -> Result<(), SearchError> {
        let f = self.fields;
        self.writer()?;
        let Self {
            writer: Some(writer),
            written,
            ..
        } = self
        else {
            return Err(SearchError::Cancelled);
        };
        for change in changes {
            let (seq, doc) = match change {
                Change::Add { p, seq, doc } => {
                    match written.get_mut(p as usize) {
                        Some(r) if *r < seq => *r = seq,
                        _ => delete(writer, f, &doc.room, seq)?,
                    }
                    (seq, Some(doc))
                }
                Change::Replace { room, seq, doc } => {
                    delete(writer, f, &room, seq)?;
                    (seq, doc)
                }
            };
            let Some(doc) = doc else { continue };
            let mut d = TantivyDocument::default();
            d.add_u64(f.seq, seq);
            d.add_text(f.room, &doc.room);
            d.add_text(f.from, &doc.from);
            d.add_u64(f.ts, doc.ts);
            d.add_text(f.body, &doc.body);
            writer.add_document(d).map_err(fail("adding a document"))?;
        }
        for (written, high) in written.iter_mut().zip(high) {
            *written = (*written).max(*high);
        }
        self.dirty = true;
        self.last_write = Instant::now();
        Ok(())
    }

    /// Commits what was written (then searches see it); closes the writer when it has had
    /// nothing to write for [`IDLE_CLOSE`] and `close_idle`.
    pub fn commit(&mut self, close_idle: bool, now: Instant) -> Result<(), SearchError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        if self.dirty {
            let mut prepared = writer.prepare_commit().map_err(fail("committing"))?;
            prepared.set_payload(&serde_json::json!({ "covered": self.written }).to_string());
            prepared.commit().map_err(fail("committing"))?;
            self.committed.clone_from(&self.written);
            self.dirty = false;
            self.reader.reload().map_err(fail("reloading"))?;
        } else if close_idle && now.duration_since(self.last_write) >= IDLE_CLOSE {
            self.close_writer()?;
        }
        Ok(())
    }

    /// Commits what was written and closes the writer (its lock on the folder too).
    pub fn close(&mut self) -> Result<(), SearchError> {
        self.commit(false, Instant::now())?;
        self.close_writer()
    }

    fn close_writer(&mut self) -> Result<(), SearchError> {
        match self.writer.take() {
            Some(w) => w.wait_merging_threads().map_err(fail("closing its writer")),
            None => Ok(()),
        }
    }

    /// Moves the documents of an index of partition `p` alone (the layout before one index
    /// per worker, in `old`) into this one, with what it covered, and commits; the caller
    /// then deletes `old`. Returns how many documents moved.
    pub fn adopt(&mut self, p: u32, old: &Path) -> Result<usize, SearchError> {
        let (index, _) = open_index(old)?;
        let covered = index
            .load_metas()
            .map_err(fail("reading an old partition index's commit"))?
            .payload
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0);
        let searcher = index
            .reader()
            .map_err(fail("reading an old partition index"))?
            .searcher();
        let addresses = searcher
            .search(&AllQuery, &DocSetCollector)
            .map_err(fail("reading an old partition index"))?;
        let moved = addresses.len();
        let fields = self.fields;
        let seq = fields.seq;
        let writer = self.writer()?;
        for address in addresses {
            let doc: TantivyDocument = searcher
                .doc(address)
                .map_err(fail("reading an old partition index"))?;
            let room = doc.get_first(fields.room).and_then(|v| v.as_str());
            if let (Some(s), Some(room)) = (doc.get_first(seq).and_then(|v| v.as_u64()), room) {
                delete(writer, fields, room, s)?;
            }
            writer
                .add_document(doc)
                .map_err(fail("adding a document"))?;
        }
        if let Some(written) = self.written.get_mut(p as usize) {
            *written = (*written).max(covered);
        }
        self.dirty = true;
        self.commit(false, Instant::now())?;
        Ok(moved)
    }

    /// What a search reads: the index as last committed. Taken under the index's lock,
    /// read without it, so searches never hold up the store writers' next batch.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            index: self.index.clone(),
            searcher: self.reader.searcher(),
            fields: self.fields,
        }
    }

    /// [`Snapshot::search`] on the index as last committed.
    #[cfg(test)]
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResults, SearchError> {
        self.snapshot().search(req)
    }
}

/// `q` with only the documented syntax left (words, `"phrases"`, `-word`, `OR`, grouping):
/// every character the query parser would read as a field name (`:`), a range or a set
/// (`[`, `]`, `{`, `}`, `<`, `>`, `=`), a wildcard (`*`), a boost (`^`), a slop (`~`) or an
/// escape (`\`) becomes a space. A range reads every posting of every term in it, in every
/// room, before the room filter applies: one query could make a worker read its whole index
/// dozens of times. The words themselves are not changed (the tokenizer splits on such
/// characters anyway).
fn plain(q: &str) -> String {
    q.chars()
        .map(|c| match c {
            ':' | '[' | ']' | '{' | '}' | '<' | '>' | '=' | '*' | '^' | '~' | '\\' => ' ',
            c => c,
        })
        .collect()
}

/// A point-in-time view of the index.
pub struct Snapshot {
    index: Index,
    searcher: Searcher,
    fields: Fields,
}

impl Snapshot {
    /// The newest messages of `req.rooms` matching `req`, at most `req.limit`.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResults, SearchError> {
        let f = self.fields;
        let mut parser = QueryParser::for_index(&self.index, vec![f.body]);
        parser.set_conjunction_by_default();
        // Whatever the user typed is a query: what the syntax cannot parse is left out.
        let (text, _) = parser.parse_query_lenient(&plain(&req.q));
        let rooms = req.rooms.iter().map(|r| Term::from_field_text(f.room, r));
        let mut must: Vec<(Occur, Box<dyn Query>)> = vec![
            (Occur::Must, text),
            (Occur::Must, Box::new(TermSetQuery::new(rooms))),
        ];
        if let Some(from) = &req.from {
            must.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.from, from),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        if req.since.is_some() || req.until.is_some() {
            let lower = req.since.map_or(Bound::Unbounded, |t| {
                Bound::Included(Term::from_field_u64(f.ts, t))
            });
            let upper = req.until.map_or(Bound::Unbounded, |t| {
                Bound::Excluded(Term::from_field_u64(f.ts, t))
            });
            must.push((Occur::Must, Box::new(RangeQuery::new(lower, upper))));
        }
        if let Some(before) = req.before {
            must.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Unbounded,
                    Bound::Excluded(Term::from_field_u64(f.seq, before)),
                )),
            ));
        }
        let query = BooleanQuery::new(must);
        let searcher = &self.searcher;
        let top = TopDocs::with_limit(req.limit + 1).order_by_fast_field::<u64>("seq", Order::Desc);
        let found = searcher.search(&query, &top).map_err(fail("searching"))?;
        let more = found.len() > req.limit;
        let mut hits = Vec::with_capacity(found.len().min(req.limit));
        for (_, address) in found.into_iter().take(req.limit) {
            let doc: TantivyDocument = searcher.doc(address).map_err(fail("reading a hit"))?;
            let text = |field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            };
            let num = |field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
            hits.push(SearchHit {
                room: text(f.room),
                seq: num(f.seq),
                from: text(f.from),
                ts: num(f.ts),
                body: text(f.body),
            });
        }
        let next_before = more.then(|| hits.last().map(|h| h.seq)).flatten();
        Ok(SearchResults {
            hits,
            more,
            next_before,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(room: &str, from: &str, ts: u64, body: &str) -> Doc {
        Doc {
            room: room.into(),
            from: from.into(),
            ts,
            body: body.into(),
        }
    }

    /// Message `seq` of partition `p`, as sent.
    fn add(p: u32, seq: u64, doc: Doc) -> Change {
        Change::Add { p, seq, doc }
    }

    fn ask(q: &str, rooms: &[&str]) -> SearchRequest {
        SearchRequest {
            q: q.into(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            from: None,
            since: None,
            until: None,
            before: None,
            limit: 10,
        }
    }

    fn found(part: &MessageIndex, req: &SearchRequest) -> Vec<u64> {
        part.search(req)
            .expect("search")
            .hits
            .iter()
            .map(|h| h.seq)
            .collect()
    }

    /// A worker serving two streams (the primary's and a region's) sees one seq in each: an
    /// edit or a delete of one message leaves the other stream's message of that seq alone.
    /// (Keyed by seq alone, "deploy" was no longer found in `general` after an edit in
    /// `eu~ops`.)
    #[test]
    fn a_seq_of_another_stream_is_another_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut part = MessageIndex::open(dir.path(), 2).expect("open");
        part.write(
            &[42, 42],
            vec![
                add(0, 42, doc("general", "ann", 100, "deploy plan")),
                add(1, 42, doc("eu~ops", "bob", 100, "deploy at noon")),
            ],
        )
        .expect("write");
        part.commit(true, Instant::now()).expect("commit");
        let both = ask("deploy", &["general", "eu~ops"]);
        assert_eq!(found(&part, &both), [42, 42]);
        part.write(
            &[0, 0],
            vec![Change::Replace {
                room: "eu~ops".into(),
                seq: 42,
                doc: Some(doc("eu~ops", "bob", 100, "hi")),
            }],
        )
        .expect("edit");
        part.commit(true, Instant::now()).expect("commit");
        assert_eq!(found(&part, &ask("deploy", &["general"])), [42]);
        assert_eq!(found(&part, &ask("hi", &["eu~ops"])), [42]);
        part.write(
            &[0, 0],
            vec![Change::Replace {
                room: "general".into(),
                seq: 42,
                doc: None,
            }],
        )
        .expect("delete");
        // A redelivery of the other stream's message replaces its own document only.
        part.write(&[0, 0], vec![add(1, 42, doc("eu~ops", "bob", 100, "hi"))])
            .expect("redelivery");
        part.commit(true, Instant::now()).expect("commit");
        assert!(found(&part, &ask("deploy", &["general", "eu~ops"])).is_empty());
        assert_eq!(found(&part, &ask("hi", &["eu~ops"])), [42], "one document");
    }

    #[test]
    fn replaces_removes_commits_and_remembers_what_it_covers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut part = MessageIndex::open(dir.path(), 4).expect("open");
        assert_eq!(part.committed(3), 0);
        part.write(
            &[0, 0, 0, 12],
            vec![
                add(3, 10, doc("a", "ann", 100, "red apples")),
                add(3, 11, doc("b", "bob", 200, "green apples")),
                add(3, 12, doc("a", "bob", 300, "red wine")),
            ],
        )
        .expect("write");
        assert!(
            found(&part, &ask("apples", &["a", "b"])).is_empty(),
            "not before a commit"
        );
        part.commit(true, Instant::now()).expect("commit");
        assert_eq!(found(&part, &ask("apples", &["a", "b"])), [11, 10]);
        assert_eq!(
            found(&part, &ask("apples", &["a"])),
            [10],
            "only the rooms asked"
        );
        assert_eq!(found(&part, &ask("red", &["a", "b"])), [12, 10]);
        let mut by_bob = ask("red", &["a", "b"]);
        by_bob.from = Some("bob".into());
        assert_eq!(found(&part, &by_bob), [12]);
        let mut early = ask("apples", &["a", "b"]);
        early.until = Some(200);
        assert_eq!(found(&part, &early), [10]);
        let mut paged = ask("apples OR wine", &["a", "b"]);
        paged.limit = 1;
        let page = part.search(&paged).expect("search");
        assert_eq!((page.hits[0].seq, page.more), (12, true));
        paged.before = Some(12);
        paged.limit = 5;
        assert_eq!(found(&part, &paged), [11, 10]);

        // An edit replaces a document, a delete removes one; a redelivery is harmless.
        part.write(
            &[0, 0, 0, 14],
            vec![
                Change::Replace {
                    room: "a".into(),
                    seq: 10,
                    doc: Some(doc("a", "ann", 100, "red pears")),
                },
                Change::Replace {
                    room: "b".into(),
                    seq: 11,
                    doc: None,
                },
            ],
        )
        .expect("write");
        part.write(
            &[0, 0, 0, 12],
            vec![add(3, 12, doc("a", "bob", 300, "red wine"))],
        )
        .expect("write again");
        part.write(
            &[0, 20, 0, 0],
            vec![add(1, 20, doc("c", "cy", 400, "pears too"))],
        )
        .expect("another partition");
        part.commit(true, Instant::now()).expect("commit");
        assert!(found(&part, &ask("apples", &["a", "b"])).is_empty());
        assert_eq!(found(&part, &ask("pears", &["a"])), [10]);
        assert_eq!(
            found(&part, &ask("red", &["a"])),
            [12, 10],
            "one document per seq"
        );
        drop(part);

        let mut part = MessageIndex::open(dir.path(), 4).expect("reopen");
        assert_eq!((part.committed(1), part.committed(3)), (20, 14));
        assert_eq!(part.committed(0), 0);
        assert_eq!(found(&part, &ask("pears", &["a"])), [10]);
        assert_eq!(found(&part, &ask("pears", &["a", "c"])), [20, 10]);

        // After a restart: a redelivery of what the commit covered replaces its document;
        // a new message and its edit, or a message delivered twice, in one write, leave one.
        part.write(
            &[0, 0, 0, 16],
            vec![
                add(3, 12, doc("a", "bob", 300, "red wine")),
                add(3, 15, doc("a", "ann", 500, "blue plums")),
                Change::Replace {
                    room: "a".into(),
                    seq: 15,
                    doc: Some(doc("a", "ann", 500, "red plums")),
                },
                add(3, 16, doc("a", "ann", 600, "red plums again")),
                add(3, 16, doc("a", "ann", 600, "red plums again")),
            ],
        )
        .expect("write after reopen");
        part.commit(true, Instant::now()).expect("commit");
        assert_eq!(found(&part, &ask("red", &["a"])), [16, 15, 12, 10]);
        assert!(
            found(&part, &ask("blue", &["a"])).is_empty(),
            "the edit replaced it"
        );
    }

    /// Only the documented syntax reaches the index: words, phrases, `-word`, `OR`. Field
    /// names, ranges (which read every posting of every term in them, in every room),
    /// wildcards, boosts and slops are read as plain words, so they find nothing here.
    #[test]
    fn field_names_ranges_and_wildcards_are_plain_words() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut part = MessageIndex::open(dir.path(), 1).expect("open");
        part.write(
            &[3],
            vec![
                add(0, 1, doc("a", "ann", 100, "hello world")),
                add(0, 2, doc("a", "ann", 200, "good night")),
                add(0, 3, doc("a", "ann", 300, "hello again")),
            ],
        )
        .expect("write");
        part.commit(true, Instant::now()).expect("commit");
        for q in [
            "body:>a",
            "body:[a TO z]",
            "[a TO z]",
            "{a TO z}",
            ">a",
            "body:hello",
            "room:a",
            "*",
            "body:*",
            "hel*",
            "body: IN [hello night]",
        ] {
            assert!(found(&part, &ask(q, &["a"])).is_empty(), "{q}");
        }
        assert_eq!(found(&part, &ask("hello", &["a"])), [3, 1]);
        assert_eq!(found(&part, &ask("\"hello world\"", &["a"])), [1]);
        assert_eq!(found(&part, &ask("hello -world", &["a"])), [3]);
        assert_eq!(found(&part, &ask("world OR night", &["a"])), [2, 1]);
    }

    #[test]
    fn an_idle_writer_is_closed_and_opened_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut part = MessageIndex::open(dir.path(), 1).expect("open");
        part.write(&[1], vec![add(0, 1, doc("a", "ann", 1, "hello"))])
            .expect("write");
        part.commit(true, Instant::now()).expect("commit");
        assert!(part.writer.is_some());
        part.commit(true, Instant::now() + IDLE_CLOSE)
            .expect("idle");
        assert!(
            part.writer.is_none(),
            "closed after IDLE_CLOSE without writes"
        );
        part.write(&[2], vec![add(0, 2, doc("a", "ann", 2, "hello again"))])
            .expect("write");
        part.commit(true, Instant::now()).expect("commit");
        assert_eq!(found(&part, &ask("hello", &["a"])), [2, 1]);
    }

    /// A partition's own index (the layout before one index per worker, its payload the
    /// covered seq alone) moves into the worker's index with what it covered.
    #[test]
    fn an_old_partition_index_is_adopted_with_what_it_covered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = dir.path().join("p2");
        {
            let (index, f) = open_index(&old).expect("old index");
            let mut writer: IndexWriter = index
                .writer_with_num_threads(1, WRITER_MEMORY)
                .expect("writer");
            for (seq, body) in [(5u64, "old apples"), (9, "old pears")] {
                let mut d = TantivyDocument::default();
                d.add_u64(f.seq, seq);
                d.add_text(f.room, "r");
                d.add_text(f.from, "ann");
                d.add_u64(f.ts, seq);
                d.add_text(f.body, body);
                writer.add_document(d).expect("add");
            }
            let mut prepared = writer.prepare_commit().expect("prepare");
            prepared.set_payload("9");
            prepared.commit().expect("commit");
        }
        let mut part = MessageIndex::open(&dir.path().join("all"), 3).expect("open");
        part.write(
            &[4, 0, 0],
            vec![add(0, 4, doc("q", "bob", 4, "new apples"))],
        )
        .expect("write");
        assert_eq!(part.adopt(2, &old).expect("adopt"), 2);
        assert_eq!((part.committed(0), part.committed(2)), (4, 9));
        assert_eq!(found(&part, &ask("apples", &["r", "q"])), [5, 4]);
        assert_eq!(found(&part, &ask("pears", &["r"])), [9]);
    }
}
