//! Rows in PostgreSQL's binary `COPY` format, encoded on the client: each value as the
//! server's binary send format, so the server parses nothing but lengths.

use uuid::Uuid;

/// The signature, flags and header extension that open a binary `COPY` stream.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// A binary `COPY … FROM STDIN WITH (FORMAT binary)` stream being encoded: start a
/// row with [`BinaryCopy::row`], then give its fields in the statement's column order.
/// [`BinaryCopy::take`] hands over what is encoded so far (to send while more is
/// encoded); [`BinaryCopy::finish`] adds the trailer. Nothing is checked here: a
/// field of the wrong type or count is the server's error at `COPY`.
#[derive(Debug)]
pub struct BinaryCopy {
    buf: Vec<u8>,
}

impl Default for BinaryCopy {
    fn default() -> Self {
        Self::new()
    }
}

impl BinaryCopy {
    /// A stream with its header written.
    pub fn new() -> Self {
        Self::with_capacity(HEADER.len())
    }

    /// A stream with its header written and room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(HEADER.len()));
        buf.extend_from_slice(HEADER);
        Self { buf }
    }

    /// Starts a row of `fields` fields.
    pub fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    /// A field of these bytes.
    fn field(&mut self, bytes: &[u8]) {
        self.buf
            .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    /// A NULL.
    pub fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// A `uuid`.
    pub fn uuid(&mut self, value: &Uuid) {
        self.field(value.as_bytes());
    }

    /// An `int4`.
    pub fn int4(&mut self, value: i32) {
        self.field(&value.to_be_bytes());
    }

    /// A `text` (or `varchar`).
    pub fn text(&mut self, value: &str) {
        self.field(value.as_bytes());
    }

    /// A `jsonb` from its JSON text (format version 1, then the text).
    pub fn jsonb(&mut self, json: &str) {
        self.buf
            .extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
        self.buf.push(1);
        self.buf.extend_from_slice(json.as_bytes());
    }

    /// A pgvector `vector`: its dimension, an unused int16, then the components.
    pub fn vector(&mut self, value: &[f32]) {
        self.buf
            .extend_from_slice(&(4 + 4 * value.len() as i32).to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len() as i16).to_be_bytes());
        self.buf.extend_from_slice(&0i16.to_be_bytes());
        for x in value {
            self.buf.extend_from_slice(&x.to_be_bytes());
        }
    }

    /// The bytes encoded so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is encoded (not even the header, once taken).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Hands over what is encoded so far, leaving the stream empty to go on.
    pub fn take(&mut self) -> Vec<u8> {
        let capacity = self.buf.capacity();
        std::mem::replace(&mut self.buf, Vec::with_capacity(capacity))
    }

    /// Ends the stream: what is left, with the trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_its_field_count_then_length_prefixed_fields() {
        let mut copy = BinaryCopy::new();
        copy.row(3);
        copy.int4(7);
        copy.jsonb("{}");
        copy.vector(&[1.0]);
        let bytes = copy.finish();
        let body = &bytes[HEADER.len()..];
        assert_eq!(&body[..2], &3i16.to_be_bytes());
        assert_eq!(&body[2..10], &[0, 0, 0, 4, 0, 0, 0, 7]);
        assert_eq!(&body[10..17], &[0, 0, 0, 3, 1, b'{', b'}']);
        assert_eq!(&body[17..21], &8i32.to_be_bytes());
        assert_eq!(&body[21..25], &[0, 1, 0, 0]);
        assert_eq!(&body[25..29], &1.0f32.to_be_bytes());
        assert_eq!(&body[29..], &(-1i16).to_be_bytes());
    }
}
