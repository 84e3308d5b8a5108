//! Recommendations: collaborative filtering by implicit-feedback matrix factorisation
//! ([`als`]), content embeddings of every track from its metadata ([`embed`]) with a
//! nearest-neighbour index over them ([`similar`]), the two blended ([`recommender`]),
//! judged offline against popularity ([`eval`]).

pub mod als;
pub mod embed;
pub mod eval;
pub mod recommender;
pub mod similar;
