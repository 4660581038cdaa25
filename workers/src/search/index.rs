//! One partition's tantivy index: its schema, writes (replace or remove a message's
//! document), commits with the covered stream seq as payload, and queries. Everything here
//! blocks: [`super::Indexes`] calls it on blocking threads, one partition at a time.

use std::ops::Bound;
use std::path::Path;
use std::time::Instant;

use chatmesh_protocol::search::{SearchHit, SearchRequest, SearchResults};
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery, TermSetQuery,
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

pub struct PartIndex {
    partition: u32,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    writer: Option<IndexWriter>,
    /// Highest stream seq written (committed or not), and committed.
    written: u64,
    committed: u64,
    /// Something was written since the last commit.
    dirty: bool,
    last_write: Instant,
}

impl PartIndex {
    pub fn open(dir: &Path, partition: u32) -> Result<Self, SearchError> {
        let err = |what| {
            move |source| SearchError::Index {
                partition,
                what,
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(|e| SearchError::Index {
            partition,
            what: "creating its folder",
            source: tantivy::TantivyError::IoError(std::sync::Arc::new(e)),
        })?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(dir).map_err(|e| SearchError::Index {
            partition,
            what: "opening its folder",
            source: e.into(),
        })?;
        let index = Index::open_or_create(directory, schema).map_err(err("opening"))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(err("opening a reader"))?;
        let committed = index
            .load_metas()
            .map_err(err("reading its commit"))?
            .payload
            .and_then(|p| p.parse::<u64>().ok())
            .unwrap_or(0);
        Ok(Self {
            partition,
            index,
            reader,
            fields,
            writer: None,
            written: committed,
            committed,
            dirty: false,
            last_write: Instant::now(),
        })
    }

    fn fail(&self, what: &'static str) -> impl FnOnce(tantivy::TantivyError) -> SearchError {
        let partition = self.partition;
        move |source| SearchError::Index {
            partition,
            what,
            source,
        }
    }

    /// The highest stream seq whose changes are committed.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Replaces (or, with `None`, removes) the document of each message seq, in order, and
    /// records `high` as covered once committed (0: covers nothing new, as for retention). Seqs at or below what is covered already
    /// were applied before (a redelivery) and are applied again: that is harmless.
    pub fn write(&mut self, high: u64, docs: Vec<(u64, Option<Doc>)>) -> Result<(), SearchError> {
        if self.writer.is_none() {
            let w = self
                .index
                .writer_with_num_threads(1, WRITER_MEMORY)
                .map_err(self.fail("opening its writer"))?;
            self.writer = Some(w);
        }
        let f = self.fields;
        let writer = self.writer.as_ref().ok_or(SearchError::Cancelled)?;
        for (seq, doc) in docs {
            writer.delete_term(Term::from_field_u64(f.seq, seq));
            let Some(doc) = doc else { continue };
            let mut d = TantivyDocument::default();
            d.add_u64(f.seq, seq);
            d.add_text(f.room, &doc.room);
            d.add_text(f.from, &doc.from);
            d.add_u64(f.ts, doc.ts);
            d.add_text(f.body, &doc.body);
            writer
                .add_document(d)
                .map_err(self.fail("adding a document"))?;
        }
        self.written = self.written.max(high);
        self.dirty = true;
        self.last_write = Instant::now();
        Ok(())
    }

    /// Commits what was written (then searches see it); closes the writer when it has had
    /// nothing to write for [`IDLE_CLOSE`] and `close_idle`.
    pub fn commit(&mut self, close_idle: bool, now: Instant) -> Result<(), SearchError> {
        let fail = self.fail("committing");
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        if self.dirty {
            let mut prepared = writer.prepare_commit().map_err(fail)?;
            prepared.set_payload(&self.written.to_string());
            prepared.commit().map_err(self.fail("committing"))?;
            self.committed = self.written;
            self.dirty = false;
            self.reader.reload().map_err(self.fail("reloading"))?;
        } else if close_idle && now.duration_since(self.last_write) >= IDLE_CLOSE {
            if let Some(w) = self.writer.take() {
                w.wait_merging_threads()
                    .map_err(self.fail("closing its writer"))?;
            }
        }
        Ok(())
    }

    /// What a search reads: the index as last committed. Taken under the partition's lock,
    /// read without it, so searches never hold up the store writer's next batch.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            partition: self.partition,
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

/// A point-in-time view of one partition's index.
pub struct Snapshot {
    partition: u32,
    index: Index,
    searcher: Searcher,
    fields: Fields,
}

impl Snapshot {
    fn fail(&self, what: &'static str) -> impl FnOnce(tantivy::TantivyError) -> SearchError {
        let partition = self.partition;
        move |source| SearchError::Index {
            partition,
            what,
            source,
        }
    }

    /// The newest messages of `req.rooms` matching `req`, at most `req.limit`.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResults, SearchError> {
        let f = self.fields;
        let mut parser = QueryParser::for_index(&self.index, vec![f.body]);
        parser.set_conjunction_by_default();
        // Whatever the user typed is a query: what the syntax cannot parse is left out.
        let (text, _) = parser.parse_query_lenient(&req.q);
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
        let found = searcher
            .search(&query, &top)
            .map_err(self.fail("searching"))?;
        let more = found.len() > req.limit;
        let mut hits = Vec::with_capacity(found.len().min(req.limit));
        for (_, address) in found.into_iter().take(req.limit) {
            let doc: TantivyDocument = searcher.doc(address).map_err(self.fail("reading a hit"))?;
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
        Ok(SearchResults { hits, more })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(room: &str, from: &str, ts: u64, body: &str) -> Option<Doc> {
        Some(Doc {
            room: room.into(),
            from: from.into(),
            ts,
            body: body.into(),
        })
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

    fn found(part: &PartIndex, req: &SearchRequest) -> Vec<u64> {
        part.search(req)
            .expect("search")
            .hits
            .iter()
            .map(|h| h.seq)
            .collect()
    }

    #[test]
    fn replaces_removes_commits_and_remembers_what_it_covers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut part = PartIndex::open(dir.path(), 3).expect("open");
        assert_eq!(part.committed(), 0);
        part.write(
            12,
            vec![
                (10, doc("a", "ann", 100, "red apples")),
                (11, doc("b", "bob", 200, "green apples")),
                (12, doc("a", "bob", 300, "red wine")),
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
            14,
            vec![(10, doc("a", "ann", 100, "red pears")), (11, None)],
        )
        .expect("write");
        part.write(12, vec![(12, doc("a", "bob", 300, "red wine"))])
            .expect("write again");
        part.commit(true, Instant::now()).expect("commit");
        assert!(found(&part, &ask("apples", &["a", "b"])).is_empty());
        assert_eq!(found(&part, &ask("pears", &["a"])), [10]);
        assert_eq!(
            found(&part, &ask("red", &["a"])),
            [12, 10],
            "one document per seq"
        );
        drop(part);

        let part = PartIndex::open(dir.path(), 3).expect("reopen");
        assert_eq!(part.committed(), 14);
        assert_eq!(found(&part, &ask("pears", &["a"])), [10]);
    }

    #[test]
    fn an_idle_writer_is_closed_and_opened_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut part = PartIndex::open(dir.path(), 0).expect("open");
        part.write(1, vec![(1, doc("a", "ann", 1, "hello"))])
            .expect("write");
        part.commit(true, Instant::now()).expect("commit");
        assert!(part.writer.is_some());
        part.commit(true, Instant::now() + IDLE_CLOSE)
            .expect("idle");
        assert!(
            part.writer.is_none(),
            "closed after IDLE_CLOSE without writes"
        );
        part.write(2, vec![(2, doc("a", "ann", 2, "hello again"))])
            .expect("write");
        part.commit(true, Instant::now()).expect("commit");
        assert_eq!(found(&part, &ask("hello", &["a"])), [2, 1]);
    }
}
