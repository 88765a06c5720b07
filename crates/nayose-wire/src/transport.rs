//! QUIC application error codes of nayose/2 (protocol-spec/wire.md, "Transport").
//!
//! Invariant: the numeric values are normative; they travel in QUIC CONNECTION_CLOSE (type
//! 0x1d), RESET_STREAM and STOP_SENDING frames as varints.

use std::fmt;

/// Application error code in a QUIC CONNECTION_CLOSE frame: why a whole connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CloseCode {
    /// 0x0: normal close; the closing side has no more requests or responses.
    NoError = 0x0,
    /// 0x1: the peer broke the protocol at connection level (e.g. opened a unidirectional
    /// stream, or sent a request on a stream the server opened).
    ProtocolViolation = 0x1,
    /// 0x2: the client certificate's id is not an accredited client.
    NotAccredited = 0x2,
    /// 0x3: the client already has the maximum number of connections open.
    TooManyConnections = 0x3,
    /// 0x4: the server is shutting down; reconnect later.
    ShuttingDown = 0x4,
    /// 0x5: the server failed.
    Internal = 0x5,
}

impl CloseCode {
    /// Every code, in numeric order.
    pub const ALL: [CloseCode; 6] = [
        CloseCode::NoError,
        CloseCode::ProtocolViolation,
        CloseCode::NotAccredited,
        CloseCode::TooManyConnections,
        CloseCode::ShuttingDown,
        CloseCode::Internal,
    ];

    /// The varint value (fits `quinn::VarInt::from_u32`).
    pub fn to_u32(self) -> u32 {
        self as u32
    }

    /// The code with value `v`, if defined; a receiver treats unknown values as `Internal`.
    pub fn from_u64(v: u64) -> Option<CloseCode> {
        CloseCode::ALL
            .iter()
            .copied()
            .find(|c| u64::from(c.to_u32()) == v)
    }

    /// The reason phrase a closing side sends with the code (ASCII, informative only).
    pub fn reason(self) -> &'static [u8] {
        match self {
            CloseCode::NoError => b"done",
            CloseCode::ProtocolViolation => b"protocol violation",
            CloseCode::NotAccredited => b"client not accredited",
            CloseCode::TooManyConnections => b"too many connections for this client",
            CloseCode::ShuttingDown => b"server shutting down",
            CloseCode::Internal => b"internal error",
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} (0x{:x})", self.to_u32())
    }
}

/// Application error code in RESET_STREAM / STOP_SENDING: why one stream is abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum StreamCode {
    /// 0x0: the requester no longer wants the response (e.g. a client stopping a base
    /// download, or abandoning requests after EpochChanged).
    Cancelled = 0x0,
    /// 0x1: the stream's bytes could not be framed (oversize header, or data after the request
    /// frame); sent by a server with STOP_SENDING after its Error response.
    BadFrame = 0x1,
    /// 0x2: the request frame did not arrive within the server's request timeout.
    Timeout = 0x2,
}

impl StreamCode {
    /// The varint value.
    pub fn to_u32(self) -> u32 {
        self as u32
    }

    /// The code with value `v`, if defined.
    pub fn from_u64(v: u64) -> Option<StreamCode> {
        [
            StreamCode::Cancelled,
            StreamCode::BadFrame,
            StreamCode::Timeout,
        ]
        .into_iter()
        .find(|c| u64::from(c.to_u32()) == v)
    }
}
