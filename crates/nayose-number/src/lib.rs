//! Japanese insured-person numbers: parsing, normalization, validation, canonical encoding (I/O-free).
