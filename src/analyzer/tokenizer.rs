//! The analyzer as a tantivy tokenizer, registered on every kefu index as [`TOKENIZER_NAME`].
//!
//! Owns: handing the analyzer's tokens to tantivy, without stop words (positions keep their gaps
//! so phrase queries stay exact). Must never: analyze differently from [`super::Analyzer::analyze`].

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

use super::analyzer;

/// Name under which the analyzer is registered in a tantivy index's tokenizer manager.
pub const TOKENIZER_NAME: &str = "kefu";

/// Stateless handle to the shared analyzer; tantivy clones it per indexing thread.
#[derive(Clone, Default)]
pub struct KefuTokenizer;

/// Tokens of one text, already computed.
pub struct KefuTokenStream {
    tokens: std::vec::IntoIter<Token>,
    current: Token,
}

impl Tokenizer for KefuTokenizer {
    type TokenStream<'a> = KefuTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> KefuTokenStream {
        let tokens: Vec<Token> = analyzer()
            .analyze(text)
            .into_iter()
            .filter(|t| !t.stop)
            .map(|t| Token {
                offset_from: t.offset_from,
                offset_to: t.offset_to,
                position: t.position,
                text: t.text,
                position_length: 1,
            })
            .collect();
        KefuTokenStream {
            tokens: tokens.into_iter(),
            current: Token::default(),
        }
    }
}

impl TokenStream for KefuTokenStream {
    fn advance(&mut self) -> bool {
        match self.tokens.next() {
            Some(token) => {
                self.current = token;
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        &self.current
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.current
    }
}
