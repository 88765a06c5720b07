//! The nayose/1 wire codec: every byte of protocol-spec/.
