//! Property tests (proptest): the reader makes the same events and the same malformed lines of an
//! input however it is cut into reads.

use proptest::prelude::*;

use super::NdjsonReader;

/// Lines of an NDJSON input: events, blank lines, broken lines, with `\n` or `\r\n`, maybe a BOM.
fn ndjson_input() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        4 => "[a-z0-9]{1,12}".prop_map(|id| format!(r#"{{"id":"event_{id}","n":[1,{{"k":"v"}}]}}"#).into_bytes()),
        1 => Just(Vec::new()),
        1 => Just(b"{broken".to_vec()),
        1 => Just(b"{\"id\":\"bad\",\"s\":\"\xff\"}".to_vec()),
    ];
    (any::<bool>(), prop::collection::vec((line, any::<bool>()), 0..40), any::<bool>()).prop_map(
        |(bom, lines, final_newline)| {
            let mut out = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
            let n = lines.len();
            for (i, (line, crlf)) in lines.into_iter().enumerate() {
                out.extend_from_slice(&line);
                if i + 1 < n || final_newline {
                    out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                }
            }
            out
        },
    )
}

/// An async reader that hands out its input in the given pieces, one per read.
struct Pieces(std::collections::VecDeque<Vec<u8>>);

impl tokio::io::AsyncRead for Pieces {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(mut piece) = self.0.pop_front() {
            let n = piece.len().min(buf.remaining());
            buf.put_slice(&piece[..n]);
            if n < piece.len() {
                self.0.push_front(piece.split_off(n));
            }
        }
        std::task::Poll::Ready(Ok(()))
    }
}

/// Everything the reader makes of `pieces`: each event's id and bytes, and each malformed line.
fn read_all(pieces: Vec<Vec<u8>>) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime");
    rt.block_on(async {
        let mut r = NdjsonReader::from_reader(Box::new(Pieces(pieces.into())), "in".into());
        let (mut events, mut malformed) = (Vec::new(), Vec::new());
        while let Some(b) = r.next_batch().await.expect("no read error") {
            events.extend(b.events.into_iter().map(|e| (e.id.to_string(), e.raw.to_vec())));
            malformed.extend(b.malformed);
        }
        (events, malformed)
    })
}

/// Cut `input` at the given points (taken modulo its length).
fn cut(input: &[u8], mut at: Vec<usize>) -> Vec<Vec<u8>> {
    if input.is_empty() {
        return vec![];
    }
    at.iter_mut().for_each(|a| *a %= input.len());
    at.sort_unstable();
    at.dedup();
    let mut pieces = Vec::new();
    let mut from = 0;
    for a in at.into_iter().chain([input.len()]) {
        if a > from {
            pieces.push(input[from..a].to_vec());
            from = a;
        }
    }
    pieces
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn ndjson_reads_the_same_however_the_input_is_cut(input in ndjson_input(), at in prop::collection::vec(any::<usize>(), 0..12)) {
        let whole = read_all(vec![input.clone()]);
        let bytewise = read_all(input.iter().map(|b| vec![*b]).collect());
        let pieces = read_all(cut(&input, at));
        prop_assert_eq!(&pieces, &whole);
        prop_assert_eq!(&bytewise, &whole);
    }
}
