//! Minimal textual editing of a JSON document: find the byte spans of values, then insert or
//! remove one member or array item at a time, leaving every other byte of the file alone.
//!
//! Why not parse-and-reserialise: `~/.claude.json` holds much other state of Claude Code, and
//! serde_json (without `preserve_order`) would reorder its keys and reformat it. Here the text is
//! first validated by serde_json (for a clear error with line and column), then scanned for spans.
//! Each edit re-parses the text, so callers never juggle stale offsets. Removal is the exact
//! inverse of insertion at the end of a container, which is what makes install-then-uninstall
//! give back the original bytes.

use serde::Serialize;

/// A parsed JSON value with its byte span `start..end` in the text.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub start: usize,
    pub end: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Object(Vec<Member>),
    Array(Vec<Node>),
    String(String),
    Other,
}

/// One `"key": value` member; its span is `start..value.end`.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub key: String,
    pub start: usize,
    pub value: Node,
}

/// The delimiters and element spans of an object or array, detached from the tree so that the
/// document can be edited while holding it.
#[derive(Debug, Clone)]
pub(crate) struct Container {
    open: usize,
    close: usize,
    elems: Vec<(usize, usize)>,
}

impl Container {
    pub fn len(&self) -> usize {
        self.elems.len()
    }
}

impl Node {
    pub fn members(&self) -> Option<&[Member]> {
        match &self.kind {
            Kind::Object(m) => Some(m),
            _ => None,
        }
    }

    pub fn items(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::String(s) => Some(s),
            _ => None,
        }
    }

    /// The member named `key` (the last one if repeated, as JavaScript's `JSON.parse` does).
    pub fn get(&self, key: &str) -> Option<&Member> {
        self.members()?.iter().rev().find(|m| m.key == key)
    }

    /// Index of the member named `key` (last one if repeated).
    pub fn index_of(&self, key: &str) -> Option<usize> {
        self.members()?.iter().rposition(|m| m.key == key)
    }

    pub fn container(&self) -> Option<Container> {
        let elems = match &self.kind {
            Kind::Object(m) => m.iter().map(|m| (m.start, m.value.end)).collect(),
            Kind::Array(items) => items.iter().map(|n| (n.start, n.end)).collect(),
            _ => return None,
        };
        Some(Container {
            open: self.start,
            close: self.end.checked_sub(1)?,
            elems,
        })
    }
}

/// The text scanner ran into something serde_json accepted but this scanner does not (should
/// not happen); reported as invalid JSON by the caller.
#[derive(Debug)]
pub(crate) struct Malformed;

/// Parses valid JSON text into spans. Call only on text serde_json has accepted.
pub(crate) fn parse(text: &str) -> Result<Node, Malformed> {
    let mut p = Parser { text, pos: 0 };
    let node = p.value()?;
    p.ws();
    if p.pos == text.len() {
        Ok(node)
    } else {
        Err(Malformed)
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), Malformed> {
        self.ws();
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn value(&mut self) -> Result<Node, Malformed> {
        self.ws();
        let start = self.pos;
        let kind = match self.peek().ok_or(Malformed)? {
            b'{' => Kind::Object(self.object()?),
            b'[' => Kind::Array(self.array()?),
            b'"' => Kind::String(self.string()?),
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(Malformed);
                }
                Kind::Other
            }
        };
        Ok(Node {
            start,
            end: self.pos,
            kind,
        })
    }

    fn string(&mut self) -> Result<String, Malformed> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek().ok_or(Malformed)? {
                b'\\' => self.pos += 2,
                b'"' => break,
                _ => self.pos += 1,
            }
        }
        self.pos += 1;
        let raw = self.text.get(start..self.pos).ok_or(Malformed)?;
        serde_json::from_str(raw).map_err(|_| Malformed)
    }

    fn object(&mut self) -> Result<Vec<Member>, Malformed> {
        self.pos += 1;
        let mut members = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(members);
        }
        loop {
            self.ws();
            let start = self.pos;
            if self.peek() != Some(b'"') {
                return Err(Malformed);
            }
            let key = self.string()?;
            self.expect(b':')?;
            let value = self.value()?;
            members.push(Member { key, start, value });
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(members);
                }
                _ => return Err(Malformed),
            }
        }
    }

    fn array(&mut self) -> Result<Vec<Node>, Malformed> {
        self.pos += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.value()?);
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(items);
                }
                _ => return Err(Malformed),
            }
        }
    }
}

/// How new values are laid out: multi-line with the file's indentation unit, or on one line.
#[derive(Debug, Clone)]
pub(crate) struct Style {
    /// The file is laid out over several lines (or is new): empty containers we fill become
    /// multi-line.
    pub pretty: bool,
    /// One level of indentation, detected from the file (default two spaces).
    pub unit: String,
}

impl Style {
    pub fn detect(text: &str, new_file: bool) -> Style {
        let trimmed = text.trim();
        let pretty = new_file || trimmed.contains('\n') || trimmed == "{}";
        let unit = text
            .lines()
            .skip(1)
            .map(|l| &l[..l.len() - l.trim_start_matches([' ', '\t']).len()])
            .find(|ws| !ws.is_empty())
            .unwrap_or("  ")
            .to_owned();
        Style { pretty, unit }
    }
}

/// Serialises `value` starting at column `indent` (None: on one line).
fn render(value: &impl Serialize, style: &Style, indent: Option<&str>) -> String {
    let mut out = Vec::new();
    let ok = match indent {
        Some(indent) => {
            let fmt = serde_json::ser::PrettyFormatter::with_indent(style.unit.as_bytes());
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            value.serialize(&mut ser).is_ok().then(|| indent.to_owned())
        }
        None if style.pretty => {
            let mut ser = serde_json::Serializer::with_formatter(&mut out, SpacedCompact);
            value.serialize(&mut ser).is_ok().then(String::new)
        }
        None => serde_json::to_writer(&mut out, value)
            .is_ok()
            .then(String::new),
    };
    let text = String::from_utf8(out).unwrap_or_default();
    match ok {
        Some(indent) if !indent.is_empty() => text.replace('\n', &format!("\n{indent}")),
        _ => text,
    }
}

/// One-line JSON with a space after `:` and `,`, for one-line containers in a pretty file.
struct SpacedCompact;

impl serde_json::ser::Formatter for SpacedCompact {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

/// A JSON document being edited: its text and the tree of the current text.
#[derive(Debug)]
pub(crate) struct Doc {
    pub text: String,
    pub root: Node,
    pub style: Style,
}

impl Doc {
    pub fn new(text: String, style: Style) -> Result<Doc, Malformed> {
        let root = parse(&text)?;
        Ok(Doc { text, root, style })
    }

    fn splice(&mut self, start: usize, end: usize, with: &str) -> Result<(), Malformed> {
        if start > end || end > self.text.len() {
            return Err(Malformed);
        }
        self.text.replace_range(start..end, with);
        self.root = parse(&self.text)?;
        Ok(())
    }

    /// Replaces the value spanning `node` by `value`, keeping its surroundings.
    pub fn replace_value(&mut self, node: &Node, value: &impl Serialize) -> Result<(), Malformed> {
        let line_start = self.text[..node.start].rfind('\n').map_or(0, |i| i + 1);
        let line = &self.text[line_start..node.start];
        let indent = &line[..line.len() - line.trim_start_matches([' ', '\t']).len()];
        let multiline = self.text[node.start..node.end].contains('\n');
        let rendered = render(value, &self.style, multiline.then_some(indent));
        self.splice(node.start, node.end, &rendered)
    }

    /// Appends `"key": value` to the object `obj`.
    pub fn insert_member(
        &mut self,
        obj: &Container,
        key: &str,
        value: &impl Serialize,
    ) -> Result<(), Malformed> {
        let key = serde_json::to_string(key).map_err(|_| Malformed)?;
        self.append(obj, |style, indent| {
            let colon = if style.pretty { ": " } else { ":" };
            format!("{key}{colon}{}", render(value, style, indent))
        })
    }

    /// Appends `value` to the array `arr`.
    pub fn append_item(
        &mut self,
        arr: &Container,
        value: &impl Serialize,
    ) -> Result<(), Malformed> {
        self.append(arr, |style, indent| render(value, style, indent))
    }

    fn append(
        &mut self,
        c: &Container,
        elem: impl Fn(&Style, Option<&str>) -> String,
    ) -> Result<(), Malformed> {
        if let Some(&(last_start, last_end)) = c.elems.last() {
            // Separator as in front of the last element (e.g. "\n    " or " ").
            let before = &self.text[..last_start];
            let sep = &before[before.trim_end_matches([' ', '\t', '\n', '\r']).len()..];
            let indent = sep.rfind('\n').map(|i| &sep[i + 1..]);
            let text = format!(",{sep}{}", elem(&self.style, indent));
            self.splice(last_end, last_end, &text)
        } else if self.style.pretty {
            let line_start = self.text[..c.open].rfind('\n').map_or(0, |i| i + 1);
            let line = &self.text[line_start..c.open];
            let parent = &line[..line.len() - line.trim_start_matches([' ', '\t']).len()];
            let indent = format!("{parent}{}", self.style.unit);
            let text = format!("\n{indent}{}\n{parent}", elem(&self.style, Some(&indent)));
            self.splice(c.open + 1, c.close, &text)
        } else {
            let text = elem(&self.style, None);
            self.splice(c.open + 1, c.close, &text)
        }
    }

    /// Removes element `i` of `c` with the separator that [`Doc::append`] would have added, so
    /// that removing an appended element restores the text exactly. The last element leaves
    /// `{}` / `[]`.
    pub fn remove(&mut self, c: &Container, i: usize) -> Result<(), Malformed> {
        match (i, c.elems.len()) {
            (_, 1) => self.splice(c.open + 1, c.close, ""),
            (0, n) if n > 1 => self.splice(c.elems[0].0, c.elems[1].0, ""),
            (i, n) if i < n => self.splice(c.elems[i - 1].1, c.elems[i].1, ""),
            _ => Err(Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Doc {
        Doc::new(text.to_owned(), Style::detect(text, false)).unwrap()
    }

    #[test]
    fn parses_spans_and_keys() {
        let text = r#"{"a": [1, "x\"y"], "b": {"c": null}}"#;
        let root = parse(text).unwrap();
        let a = root.get("a").unwrap();
        assert_eq!(&text[a.value.start..a.value.end], r#"[1, "x\"y"]"#);
        assert_eq!(a.value.items().unwrap()[1].as_str(), Some("x\"y"));
        assert!(root.get("b").unwrap().value.get("c").is_some());
    }

    #[test]
    fn append_then_remove_is_identity() {
        for text in [
            "{\n  \"a\": 1\n}\n",
            "{}",
            "{\"a\":1}",
            "{\n    \"a\": [\n        1\n    ]\n}",
            "{ \"a\": [1, 2] }",
        ] {
            let mut d = doc(text);
            let c = d.root.container().unwrap();
            d.insert_member(&c, "k", &serde_json::json!({"x": [1, 2]}))
                .unwrap();
            serde_json::from_str::<serde_json::Value>(&d.text).unwrap();
            let c = d.root.container().unwrap();
            d.remove(&c, c.len() - 1).unwrap();
            assert_eq!(d.text, text);
        }
    }

    #[test]
    fn pretty_insert_uses_file_indent() {
        let mut d = doc("{\n    \"a\": 1\n}");
        let c = d.root.container().unwrap();
        d.insert_member(&c, "b", &serde_json::json!({"c": 2}))
            .unwrap();
        assert_eq!(
            d.text,
            "{\n    \"a\": 1,\n    \"b\": {\n        \"c\": 2\n    }\n}"
        );
    }
}
