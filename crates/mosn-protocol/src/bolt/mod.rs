//! SOFA Bolt v1 and v2 frames (MOSN's `bolt` and `boltv2`), sans-IO: [`decode`] splits one frame
//! off a buffer, [`Frame::encode`] writes one. The class name and the header map are read; the
//! content (hessian2 or protobuf) is carried as opaque bytes and never decoded.
//!
//! Layout (big-endian; source: SOFABolt `RpcProtocol`/`RpcProtocolV2`, and MOSN
//! `pkg/protocol/xprotocol/bolt`):
//!
//! | field | v1 request | v1 response | v2 adds |
//! |---|---|---|---|
//! | proto | `0x01` | `0x01` | `0x02`, then `ver1` (1 byte) |
//! | type | 1 request, 2 oneway | 0 response | |
//! | cmdcode (u16) | 1 request, 0 heartbeat | 2 response, 0 heartbeat | |
//! | ver2, requestId (u32), codec | | | then `switch` (bit 0: CRC32 on) |
//! | timeout ms (u32) / status (u16) | timeout | status | |
//! | classLen (u16), headerLen (u16), contentLen (u32) | | | |
//! | class, header map, content | | | then CRC32 (u32) of everything before it, when `switch` says so |
//!
//! The header map is a sequence of `u32 keyLen, key, u32 valueLen, value`.

mod frame;
pub mod status;
mod xprotocol;

pub use frame::{decode, BoltError, Frame, Kind, Version, MAX_FRAME_BYTES};
pub use xprotocol::{Bolt, CMD_GOAWAY};

/// Bolt v1's protocol byte.
pub const PROTO_V1: u8 = 1;
/// Bolt v2's protocol byte.
pub const PROTO_V2: u8 = 2;
/// `cmdcode` of a heartbeat (request or reply).
pub const CMD_HEARTBEAT: u16 = 0;
/// `cmdcode` of an RPC request.
pub const CMD_REQUEST: u16 = 1;
/// `cmdcode` of an RPC response.
pub const CMD_RESPONSE: u16 = 2;
/// Response status: success (see [`status`] for the others).
pub const STATUS_SUCCESS: u16 = status::SUCCESS;
