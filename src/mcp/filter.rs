//! List filtering (DESIGN step 8): every server-to-client message is rewritten so that
//! the caller sees only what the policy lets them use. Items are removed; every other
//! member (`nextCursor`, `_meta`, …) and every surviving item is kept byte for byte.
//!
//! The filter goes by the *shape* of a message, not by the request it answers: the
//! gateway is stateless across replicas and a resumed stream (`Last-Event-ID`) replays
//! answers to requests it never saw, and clients match ids loosely (`Number(id)`). So
//! every JSON-RPC `result` object, with any id, alone or in a batch, that carries a
//! `tools`, `prompts`, `resources` or `resourceTemplates` member has that array filtered
//! by the rule of its kind; and a `notifications/resources/updated` for a URI the caller
//! may not read is withheld.
//!
//! Works on one JSON-RPC message or batch at a time (a whole JSON body, or one SSE
//! event's data). Nothing is parsed into values: one pass of the [`Scanner`] checks the
//! text and finds the items and their names; the output is the input with the removed
//! items cut out. Anything that cannot be read is an error — the caller fails closed,
//! never passes the message on unfiltered.
//!
//! The same reading seals server-minted handles ([`Rules::seal_state`]): every
//! `result.requestState` is replaced by its seal for the caller (see `mcp::handles`).

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use super::handles::SealState;
use super::jsonrpc::RELATED_TASK_META_KEY;
use super::scan::{JsonStr, NotJson, Scanner};

pub use super::methods::ListKind;

impl ListKind {
    /// The member of `result` holding the items.
    pub fn field(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The member of an item that the policy judges.
    pub fn key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }
}

/// List requests sent upstream (raw id, kind). The filter itself goes by the shape of
/// an answer, not by its id (see the module doc); this only tells the proxy that a JSON
/// answer should be held whole, so that an unfilterable one can become a 502.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingLists {
    pending: Vec<(Box<str>, ListKind)>,
}

impl PendingLists {
    pub fn add(&mut self, id: &str, kind: ListKind) {
        self.pending.push((Box::from(id), kind));
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError(pub &'static str);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The message is not JSON (as the scanner reads RFC 8259).
pub const NOT_JSON: FilterError = FilterError("the answer is not JSON");

/// What filtering did to one message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filtered {
    /// The new text, when anything was removed.
    pub rewritten: Option<String>,
    /// (kind, items removed) per item array found.
    pub removed: Vec<(ListKind, usize)>,
    /// The whole message is withheld (a notification the caller may not see).
    pub dropped: bool,
}

/// Why a message could not be filtered: not JSON at all, or JSON of the wrong shape.
enum Fail {
    NotJson,
    Shape(FilterError),
}

impl From<NotJson> for Fail {
    fn from(_: NotJson) -> Fail {
        Fail::NotJson
    }
}

impl From<FilterError> for Fail {
    fn from(e: FilterError) -> Fail {
        Fail::Shape(e)
    }
}

const DUPLICATE: FilterError = FilterError("a JSON-RPC message with a duplicate member");

/// One edit of the text: the text of `inner` is replaced by the kept items (a filtered
/// item array, between its brackets) or by a literal the gateway writes.
struct Edit {
    inner: Range<usize>,
    kept: Vec<Range<usize>>,
    literal: Option<Cow<'static, str>>,
}

/// What a filtered list's `cacheScope` becomes (MCP 2026-07-28 caching hints): the list
/// was cut to what this caller may see, so no shared cache may serve it to another.
const PRIVATE_SCOPE: &str = "\"private\"";

/// What filtering one message found, applied only once all of it has been read.
#[derive(Default)]
struct Found {
    edits: Vec<Edit>,
    removed: Vec<(ListKind, usize)>,
}

/// The policy's question: may the caller see this item (its name or URI)?
pub type Keep<'a> = &'a dyn Fn(ListKind, &str) -> bool;

/// Pinned tool definitions: may the caller see this listed tool (its name, and the item's
/// JSON text, whose digest is checked against its pin)? Asked only for a tool the policy
/// lets the caller see.
pub type Pinned<'a> = &'a dyn Fn(&str, &str) -> bool;

/// What filtering does to a message: the policy's list rule (`None` on a route without a
/// policy: lists and notifications pass as they are) and the sealing of an upstream
/// `requestState` (`None`: left as it is; see `mcp::handles`).
#[derive(Clone, Copy)]
pub struct Rules<'a> {
    pub keep: Option<Keep<'a>>,
    pub seal_state: Option<SealState<'a>>,
    /// Task ids (tasks extension): sealed for the caller, or withheld where the gateway
    /// cannot tell whose task it is (`None`: left as they are; see `mcp::handles`).
    pub tasks: Option<TaskRules<'a>>,
    /// The route's pinned tool definitions (`None`: tools are judged by name alone).
    pub pinned: Option<Pinned<'a>>,
}

impl<'a> Rules<'a> {
    /// The policy's list rule alone.
    pub fn policy(keep: Keep<'a>) -> Rules<'a> {
        Rules {
            keep: Some(keep),
            seal_state: None,
            tasks: None,
            pinned: None,
        }
    }
}

/// What happens to the task ids of a server-to-client message.
///
/// A `result` answers the caller's own request: its `taskId` (`tasks/get`,
/// `tasks/cancel`, `tasks/update`), `task.taskId` (a task-augmented request) and
/// related-task `_meta` are sealed for the caller. Anything that may be about another
/// caller's task — each entry of `result.tasks` (`tasks/list`), and every notification
/// or server request whose `params` name a task (`notifications/tasks/status`, the
/// related-task `_meta`) — is sealed only when it is [`TaskRules::attributable`], and
/// otherwise withheld (a list entry removed, a message dropped).
#[derive(Clone, Copy)]
pub struct TaskRules<'a> {
    /// The sealed form of an upstream task id literal (as written, between its quotes);
    /// `None` when it cannot be sealed (the message is then unfilterable).
    pub seal: SealState<'a>,
    /// The upstream sees each caller with a credential of their own (token exchange), so
    /// whatever task it shows a caller is one it lets that caller use.
    pub per_caller: bool,
    /// The task ids (decoded) that the request being answered presented, and that the
    /// gateway opened for this caller: theirs, whatever the credential.
    pub presented: &'a [String],
}

impl TaskRules<'_> {
    /// Whether a task id seen outside a result may be handed to this caller.
    pub fn attributable(&self, id: &str) -> bool {
        self.per_caller || self.presented.iter().any(|p| p == id)
    }
}

const TASK_NOT_STRING: FilterError = FilterError("a taskId that is not a string");
const TASK_NOT_SEALED: FilterError = FilterError("a taskId the gateway could not seal");

/// The edit that puts the sealed form of the task id string at `span` in its place.
fn seal_task_id(text: &str, span: Range<usize>, tasks: TaskRules<'_>) -> Result<Edit, Fail> {
    let literal = &text[span.start + 1..span.end - 1];
    let sealed = (tasks.seal)(literal).ok_or(TASK_NOT_SEALED)?;
    Ok(Edit {
        inner: span,
        kept: Vec::new(),
        literal: Some(Cow::Owned(format!("\"{sealed}\""))),
    })
}

/// A task id found in a message: its span (with the quotes) and decoded value.
type TaskIdAt = (Range<usize>, String);

/// Reads a string member that holds a task id, the scanner placed before the value.
fn task_id_value(s: &mut Scanner<'_>) -> Result<TaskIdAt, Fail> {
    if s.peek() != Some(b'"') {
        s.value()?;
        return Err(TASK_NOT_STRING.into());
    }
    let start = s.pos();
    let value = s.string()?.decode().ok_or(Fail::NotJson)?.into_owned();
    Ok((start..s.pos(), value))
}

/// The `taskId` of the value at the scanner, when it is an object that has one; the
/// span of the whole value. A `taskId` twice or of another type is an error.
fn task_object(s: &mut Scanner<'_>) -> Result<(Range<usize>, Option<TaskIdAt>), Fail> {
    if s.peek() != Some(b'{') {
        return Ok((s.value()?, None));
    }
    let mut found = None;
    let span = s.object(|s, key| {
        if key.is("taskId") {
            if found.is_some() {
                return Err(Fail::Shape(DUPLICATE));
            }
            found = Some(task_id_value(s)?);
            return Ok(());
        }
        s.value()?;
        Ok(())
    })?;
    Ok((span, found))
}

/// The related-task id of the `_meta` value at the scanner, if it names one.
fn related_task(s: &mut Scanner<'_>) -> Result<Option<TaskIdAt>, Fail> {
    if s.peek() != Some(b'{') {
        s.value()?;
        return Ok(None);
    }
    let mut found = None;
    let mut seen = false;
    s.object(|s, key| {
        if key.is(RELATED_TASK_META_KEY) {
            if seen {
                return Err(Fail::Shape(DUPLICATE));
            }
            seen = true;
            found = task_object(s)?.1;
            return Ok(());
        }
        s.value()?;
        Ok(())
    })?;
    Ok(found)
}

/// `result.tasks` (`tasks/list`): the entries the caller may see, each with its task id
/// sealed, as the new text between the brackets; entries the gateway cannot attribute,
/// or without one string `taskId`, are left out.
fn task_list(s: &mut Scanner<'_>, tasks: TaskRules<'_>) -> Result<(Range<usize>, String), Fail> {
    let text = s.text();
    if s.peek() != Some(b'[') {
        s.value()?;
        return Err(FilterError("a task list that is not an array").into());
    }
    let mut out = String::new();
    let list = s.array(|s| {
        let (span, id) = task_object(s)?;
        let Some((id_span, id)) = id else {
            return Ok::<_, Fail>(());
        };
        if !tasks.attributable(&id) {
            return Ok(());
        }
        let edit = seal_task_id(text, id_span, tasks)?;
        if !out.is_empty() {
            out.push(',');
        }
        apply(text, span, std::slice::from_ref(&edit), &mut out);
        Ok(())
    })?;
    Ok((list.start + 1..list.end - 1, out))
}

/// A `requestState` member of a result: it must be one string, and is replaced by its
/// sealed form (the raw literal never reaches the client).
const STATE_NOT_STRING: FilterError = FilterError("a requestState that is not a string");
const STATE_NOT_SEALED: FilterError = FilterError("a requestState the gateway could not seal");

/// An item of a list and its judged member (`name`, `uri`, …) when that is a string
/// found exactly once.
fn item<'a>(s: &mut Scanner<'a>, key: &str) -> Result<(Range<usize>, Option<Cow<'a, str>>), Fail> {
    if s.peek() != Some(b'{') {
        return Ok((s.value()?, None));
    }
    let mut name = None;
    let mut seen = 0;
    let span = s.object(|s, k| {
        if k.is(key) {
            seen += 1;
            if s.peek() == Some(b'"') {
                name = s.string()?.decode();
                return Ok::<_, Fail>(());
            }
        }
        s.value()?;
        Ok(())
    })?;
    // A duplicate member: the client might read the other one. Not shown (fail closed).
    Ok((span, name.filter(|_| seen == 1)))
}

/// Which list member, if any, a member name of a `result` object is.
fn list_member(key: &JsonStr<'_>) -> Option<ListKind> {
    const KINDS: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Prompts,
        ListKind::Resources,
        ListKind::ResourceTemplates,
    ];
    KINDS.into_iter().find(|k| key.is(k.field()))
}

/// Filters a `result` object, the scanner placed before it: every member named like a
/// list's items (`tools`, `prompts`, `resources`, `resourceTemplates`) must be an array
/// and is filtered by the rule of its kind, whatever request the result answers.
/// Its `requestState`, if any, must be one string and is sealed (with `rules.seal_state`).
fn filter_result(s: &mut Scanner<'_>, rules: Rules<'_>, found: &mut Found) -> Result<(), Fail> {
    let text = s.text();
    let first_edit = found.edits.len();
    let mut seen: Vec<ListKind> = Vec::new();
    let mut cache_scope: Option<Range<usize>> = None;
    let mut state_seen = false;
    let mut task_members: Vec<&'static str> = Vec::new();
    s.object(|s, key| {
        if let Some(tasks) = rules.tasks {
            let member = ["taskId", "task", "tasks", "_meta"]
                .into_iter()
                .find(|m| key.is(m));
            if let Some(member) = member {
                if task_members.contains(&member) {
                    return Err(Fail::Shape(DUPLICATE));
                }
                task_members.push(member);
                let at = match member {
                    "taskId" => Some(task_id_value(s)?),
                    "task" => task_object(s)?.1,
                    "_meta" => related_task(s)?,
                    _ => {
                        let (inner, kept) = task_list(s, tasks)?;
                        found.edits.push(Edit {
                            inner,
                            kept: Vec::new(),
                            literal: Some(Cow::Owned(kept)),
                        });
                        None
                    }
                };
                if let Some((span, _)) = at {
                    found.edits.push(seal_task_id(text, span, tasks)?);
                }
                return Ok(());
            }
        }
        if key.is("requestState") {
            if state_seen {
                return Err(Fail::Shape(DUPLICATE));
            }
            state_seen = true;
            if s.peek() != Some(b'"') {
                s.value()?;
                return Err(STATE_NOT_STRING.into());
            }
            let span = s.value()?;
            if let Some(seal) = rules.seal_state {
                let literal = &text[span.start + 1..span.end - 1];
                let sealed = seal(literal).ok_or(STATE_NOT_SEALED)?;
                found.edits.push(Edit {
                    inner: span,
                    kept: Vec::new(),
                    literal: Some(Cow::Owned(format!("\"{sealed}\""))),
                });
            }
            return Ok(());
        }
        if key.is("cacheScope") && (rules.keep.is_some() || rules.tasks.is_some()) {
            if cache_scope.is_some() {
                return Err(Fail::Shape(DUPLICATE));
            }
            cache_scope = Some(s.value()?);
            return Ok(());
        }
        let Some(keep) = rules.keep else {
            s.value()?;
            return Ok(());
        };
        let Some(kind) = list_member(&key) else {
            s.value()?;
            return Ok(());
        };
        if seen.contains(&kind) {
            return Err(Fail::Shape(DUPLICATE));
        }
        seen.push(kind);
        if s.peek() != Some(b'[') {
            s.value()?;
            return Err(FilterError("list items that are not an array").into());
        }
        let mut kept = Vec::new();
        let mut total = 0;
        let list = s.array(|s| {
            total += 1;
            let (span, name) = item(s, kind.key())?;
            let pinned = |n: &str| match rules.pinned {
                Some(pinned) if kind == ListKind::Tools => pinned(n, &text[span.clone()]),
                _ => true,
            };
            if name.is_some_and(|n| keep(kind, &n) && pinned(&n)) {
                kept.push(span);
            }
            Ok::<_, Fail>(())
        })?;
        found.removed.push((kind, total - kept.len()));
        if kept.len() < total {
            found.edits.push(Edit {
                inner: list.start + 1..list.end - 1,
                kept,
                literal: None,
            });
        }
        Ok(())
    })?;
    // A list judged for this caller (the policy's, or a task list) is private to them,
    // whatever the upstream said; an absent `cacheScope` already means private to the SDK
    // clients.
    let judged = !seen.is_empty() || task_members.contains(&"tasks");
    if let Some(scope) = cache_scope.filter(|r| judged && text[r.clone()] != *PRIVATE_SCOPE) {
        found.edits.push(Edit {
            inner: scope,
            kept: Vec::new(),
            literal: Some(Cow::Borrowed(PRIVATE_SCOPE)),
        });
    }
    found.edits[first_edit..].sort_by_key(|e| e.inner.start);
    Ok(())
}

/// The notification that names a resource whose content changed: seen only by callers
/// who may read that resource.
const RESOURCE_UPDATED: &str = "notifications/resources/updated";

/// Whether a `resources/updated` notification's params name a URI the caller may read;
/// unreadable params are not shown (fail closed).
fn resource_update_visible(text: &str, params: Option<Range<usize>>, keep: Keep<'_>) -> bool {
    let Some(params) = params else { return false };
    let mut s = Scanner::at(text, params.start);
    if s.peek() != Some(b'{') {
        return false;
    }
    let mut uri = None;
    let mut seen = 0;
    let read = s.object(|s, k| {
        if k.is("uri") {
            seen += 1;
            if s.peek() == Some(b'"') {
                uri = s.string()?.decode();
                return Ok::<_, NotJson>(());
            }
        }
        s.value()?;
        Ok(())
    });
    read.is_ok() && seen == 1 && uri.is_some_and(|u| keep(ListKind::Resources, &u))
}

/// Reads one JSON-RPC object, the scanner placed before it: filters its `result`, and
/// says whether the whole message is to be withheld.
fn filter_object(s: &mut Scanner<'_>, rules: Rules<'_>, found: &mut Found) -> Result<bool, Fail> {
    let text = s.text();
    let first_edit = found.edits.len();
    let mut result_seen = false;
    let mut method: Option<Option<Cow<'_, str>>> = None;
    let mut params: Option<Range<usize>> = None;
    s.object(|s, key| {
        if key.is("result") {
            if result_seen {
                return Err(Fail::Shape(DUPLICATE));
            }
            result_seen = true;
            if s.peek() == Some(b'{') {
                filter_result(s, rules, found)?;
            } else {
                s.value()?;
            }
        } else if key.is("method") {
            if method.is_some() {
                return Err(Fail::Shape(DUPLICATE));
            }
            method = Some(if s.peek() == Some(b'"') {
                s.string()?.decode()
            } else {
                s.value()?;
                None
            });
        } else if key.is("params") {
            if params.is_some() {
                return Err(Fail::Shape(DUPLICATE));
            }
            params = Some(s.value()?);
        } else {
            s.value()?;
        }
        Ok(())
    })?;
    let withheld = match rules.keep {
        Some(keep) => {
            matches!(&method, Some(Some(m)) if m == RESOURCE_UPDATED)
                && !resource_update_visible(text, params.clone(), keep)
        }
        None => false,
    };
    if let (Some(tasks), Some(params), false) = (rules.tasks, params, withheld) {
        let ids = params_task_ids(text, params)?;
        if !ids.iter().all(|(_, id)| tasks.attributable(id)) {
            return Ok(true);
        }
        for (span, _) in ids {
            found.edits.push(seal_task_id(text, span, tasks)?);
        }
        found.edits[first_edit..].sort_by_key(|e| e.inner.start);
    }
    Ok(withheld)
}

/// The task ids a notification's or server request's `params` name: `params.taskId`
/// (`notifications/tasks/status`) and the related-task `_meta`.
fn params_task_ids(text: &str, params: Range<usize>) -> Result<Vec<TaskIdAt>, Fail> {
    let mut s = Scanner::at(text, params.start);
    let mut ids = Vec::new();
    if s.peek() != Some(b'{') {
        return Ok(ids);
    }
    let (mut id_seen, mut meta_seen) = (false, false);
    s.object(|s, key| {
        if key.is("taskId") {
            if std::mem::replace(&mut id_seen, true) {
                return Err(Fail::Shape(DUPLICATE));
            }
            ids.push(task_id_value(s)?);
        } else if key.is("_meta") {
            if std::mem::replace(&mut meta_seen, true) {
                return Err(Fail::Shape(DUPLICATE));
            }
            ids.extend(related_task(s)?);
        } else {
            s.value()?;
        }
        Ok(())
    })?;
    Ok(ids)
}

/// `text[range]` with the edits inside it applied.
fn apply(text: &str, range: Range<usize>, edits: &[Edit], out: &mut String) {
    let mut at = range.start;
    for edit in edits {
        out.push_str(&text[at..edit.inner.start]);
        if let Some(literal) = &edit.literal {
            out.push_str(literal);
        }
        for (i, item) in edit.kept.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&text[item.clone()]);
        }
        at = edit.inner.end;
    }
    out.push_str(&text[at..range.end]);
}

/// Filters a JSON-RPC message or batch (a whole JSON body, or an SSE event's data) by its
/// shape: every result carrying list items, whatever its id; and every notification the
/// caller may not see. Surviving items are kept byte for byte. Anything that cannot be
/// read is an error ([`NOT_JSON`] when it is not JSON at all): the caller fails closed.
pub fn filter_message(text: &str, keep: Keep<'_>) -> Result<Filtered, FilterError> {
    filter_message_with(text, Rules::policy(keep))
}

/// [`filter_message`] with any [`Rules`]: also seals every `result.requestState`
/// (whatever the result answers) when `rules.seal_state` is set.
pub fn filter_message_with(text: &str, rules: Rules<'_>) -> Result<Filtered, FilterError> {
    let mut s = Scanner::new(text);
    let read = match s.peek() {
        Some(b'[') => filter_batch(&mut s, rules),
        Some(b'{') => {
            let mut found = Found::default();
            filter_object(&mut s, rules, &mut found).map(|dropped| {
                let rewritten = (!found.edits.is_empty()).then(|| {
                    let mut out = String::with_capacity(text.len());
                    apply(text, 0..text.len(), &found.edits, &mut out);
                    out
                });
                Filtered {
                    rewritten,
                    removed: found.removed,
                    dropped,
                }
            })
        }
        // A scalar carries nothing to filter, but must still be JSON.
        _ => s.value().map(|_| Filtered::default()).map_err(Fail::from),
    };
    let read = read.and_then(|f| {
        if s.at_end() {
            Ok(f)
        } else {
            Err(Fail::NotJson)
        }
    });
    match read {
        Ok(filtered) => Ok(filtered),
        Err(Fail::Shape(e)) => Err(e),
        Err(Fail::NotJson) => Err(NOT_JSON),
    }
}

/// A batch: each element filtered on its own; withheld elements are left out.
fn filter_batch(s: &mut Scanner<'_>, rules: Rules<'_>) -> Result<Filtered, Fail> {
    let text = s.text();
    let mut elements: Vec<(Range<usize>, Found, bool)> = Vec::new();
    s.array(|s| {
        if s.peek() != Some(b'{') {
            elements.push((s.value()?, Found::default(), false));
            return Ok::<_, Fail>(());
        }
        let start = s.pos();
        let mut found = Found::default();
        let dropped = filter_object(s, rules, &mut found)?;
        elements.push((start..s.pos(), found, dropped));
        Ok(())
    })?;
    let changed = elements
        .iter()
        .any(|(_, found, dropped)| *dropped || !found.edits.is_empty());
    let mut out = Filtered::default();
    for (_, found, _) in &mut elements {
        out.removed.append(&mut found.removed);
    }
    if !changed {
        return Ok(out);
    }
    let kept: Vec<_> = elements.iter().filter(|(_, _, d)| !d).collect();
    if kept.is_empty() {
        out.dropped = true;
        return Ok(out);
    }
    let mut text_out = String::with_capacity(text.len());
    text_out.push('[');
    for (i, (span, found, _)) in kept.into_iter().enumerate() {
        if i > 0 {
            text_out.push(',');
        }
        apply(text, span.clone(), &found.edits, &mut text_out);
    }
    text_out.push(']');
    out.rewritten = Some(text_out);
    Ok(out)
}

/// Largest non-event-stream answer the gateway buffers to filter; a larger one fails
/// closed.
pub const MAX_JSON_BODY: usize = 16 << 20;

/// A filtered body and what was removed from it.
pub type FilteredBody = (Vec<u8>, Vec<(ListKind, usize)>);

/// Buffers a whole non-event-stream answer and filters it at the end, whatever its
/// `Content-Type` says: a client may parse it as JSON anyway.
///
/// The rule for a body that is not JSON: on a 2xx answer it passes only when no parser,
/// however lenient (`NaN`, comments, unquoted keys, a charset guess), could read a list
/// out of it: plain printable ASCII with no `[`, `{` or `+` (a list needs an array; `+`
/// starts a UTF-7 escape). That lets the legacy transport's `202 Accepted` through and
/// refuses anything else. On other statuses it passes (clients treat those as errors and
/// read no result from them).
#[derive(Debug, Default)]
pub struct JsonListRewriter {
    buf: Vec<u8>,
    /// The status is 2xx.
    success: bool,
    /// Without a policy, an answer too large to hold passes on as it streams.
    passing: bool,
}

impl JsonListRewriter {
    pub fn new(success: bool) -> JsonListRewriter {
        JsonListRewriter {
            buf: Vec::new(),
            success,
            passing: false,
        }
    }

    /// Takes one chunk; returns the body to send once `end` is reached (nothing before).
    pub fn push(
        &mut self,
        chunk: &[u8],
        end: bool,
        keep: Keep<'_>,
    ) -> Result<Option<FilteredBody>, FilterError> {
        self.push_with(chunk, end, Rules::policy(keep))
    }

    /// [`JsonListRewriter::push`] with any [`Rules`]. Without a policy (`rules.keep` is
    /// `None`) only a `requestState` is sealed, and an answer that cannot be read (not
    /// JSON, too large, a state that is not one string) passes as it is, as it did before
    /// states were sealed: the client then holds a raw state, which the request side
    /// refuses (see `mcp::handles`), so the miss fails closed there.
    pub fn push_with(
        &mut self,
        chunk: &[u8],
        end: bool,
        rules: Rules<'_>,
    ) -> Result<Option<FilteredBody>, FilterError> {
        let lenient = rules.keep.is_none();
        if self.passing {
            return Ok(Some((chunk.to_vec(), Vec::new())));
        }
        if self.buf.len() + chunk.len() > MAX_JSON_BODY {
            if lenient {
                self.passing = true;
                let mut body = std::mem::take(&mut self.buf);
                body.extend_from_slice(chunk);
                return Ok(Some((body, Vec::new())));
            }
            return Err(FilterError("the answer is too large to filter"));
        }
        self.buf.extend_from_slice(chunk);
        if !end {
            return Ok(None);
        }
        let body = std::mem::take(&mut self.buf);
        if body.trim_ascii().is_empty() {
            return Ok(Some((body, Vec::new())));
        }
        let filtered = std::str::from_utf8(&body)
            .map_err(|_| NOT_JSON)
            .and_then(|text| filter_message_with(text, rules));
        match filtered {
            Ok(Filtered { dropped: true, .. }) => Err(FilterError(
                "the answer is a notification the caller may not see",
            )),
            Ok(Filtered {
                rewritten, removed, ..
            }) => Ok(Some((rewritten.map_or(body, String::into_bytes), removed))),
            Err(e) if e == NOT_JSON && (!self.success || cannot_hold_a_list(&body)) => {
                Ok(Some((body, Vec::new())))
            }
            Err(_) if lenient => Ok(Some((body, Vec::new()))),
            Err(e) => Err(e),
        }
    }
}

/// Plain printable ASCII (and white space) without `[`, `{` or `+`: text from which no
/// JSON-like reading can produce an array.
fn cannot_hold_a_list(body: &[u8]) -> bool {
    body.iter().all(|&b| {
        (b == b'\t' || b == b'\n' || b == b'\r' || (0x20..0x7f).contains(&b))
            && !matches!(b, b'[' | b'{' | b'+')
    })
}

#[cfg(test)]
mod tests;
