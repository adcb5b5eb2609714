// A controllable js-libp2p peer for the Guts interop tests.
//
//   node --experimental-websocket interop/peer.mjs [--listen MA]... [--seed HEX32] [--encrypter noise|tls]...
//        [--transport tcp|ws|quic]...
//
// stdout carries JSON lines only: one "ready" line, then command replies
// ({"id":..,"ok":..}) and events ({"event":..}). stdin takes one JSON command
// per line. Everything else (logs, DEBUG=libp2p:* output) goes to stderr.
// See README.md for the command protocol.
import './polyfill.mjs'

import { createHash, createCipheriv, randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'
import { setMaxListeners } from 'node:events'
import { parseArgs } from 'node:util'

import { generateKeyPair, generateKeyPairFromSeed, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { gossipsub } from '@libp2p/gossipsub'
import { identify, identifyPush } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { noise } from '@libp2p/noise'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { tls } from '@libp2p/tls'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { bases } from 'multiformats/basics'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'

const ECHO_PROTOCOL = '/guts/echo/1.0.0'
const DEFAULT_LISTEN = ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws']
// Echo streams may carry 16 MiB each and a hundred of them run at once on one
// connection; the stock per-protocol limits (32 in, 64 out) and the 4 MiB read
// buffer (a paused yamux stream can still receive a whole 16 MiB window) are
// too small for that.
const ECHO_MAX_STREAMS = 1024
const ECHO_READ_BUFFER = 64 * 1024 * 1024
const ECHO_CHUNK = 64 * 1024
const DEFAULT_TIMEOUT_MS = 60_000
// an echo stream pauses reading (stops granting yamux window) while more than
// HIGH received bytes wait to be echoed, and resumes below LOW
const ECHO_QUEUE_HIGH = 1024 * 1024
const ECHO_QUEUE_LOW = 256 * 1024

// Libraries must not write to stdout: it is the JSON channel.
console.log = (...args) => console.error(...args)

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function log (...args) {
  console.error('[jspeer]', ...args)
}

function errorText (err) {
  if (err == null) return 'unknown error'
  const name = err.name != null && err.name !== 'Error' ? `${err.name}: ` : ''
  return `${name}${err.message ?? String(err)}`
}

// a failure before the ready line is fatal: say why on stderr, exit 2
function fatal (err) {
  console.error('[jspeer] fatal:', err?.stack ?? err)
  process.exit(2)
}

process.on('unhandledRejection', (err) => {
  log('unhandled rejection:', err?.stack ?? err)
})
process.on('uncaughtException', (err) => {
  log('uncaught exception:', err?.stack ?? err)
})

// ---------------------------------------------------------------- arguments

let argv
try {
  argv = parseArgs({
    options: {
      listen: { type: 'string', multiple: true },
      seed: { type: 'string' },
      encrypter: { type: 'string', multiple: true },
      transport: { type: 'string', multiple: true },
      'no-identify-push': { type: 'boolean', default: false },
      dht: { type: 'boolean', default: false },
      'dht-protocol': { type: 'string', default: '/ipfs/kad/1.0.0' },
      'dht-no-self-query': { type: 'boolean', default: false },
      gossipsub: { type: 'boolean', default: false },
      'gossip-protocol': { type: 'string', multiple: true }
    },
    strict: true
  }).values
} catch (err) {
  fatal(err)
}

async function makePrivateKey (seedHex) {
  if (seedHex == null) {
    return generateKeyPair('Ed25519')
  }
  if (!/^[0-9a-fA-F]{64}$/.test(seedHex)) {
    throw new Error('--seed must be 64 hex digits (a 32-byte Ed25519 seed)')
  }
  return generateKeyPairFromSeed('Ed25519', Uint8Array.from(Buffer.from(seedHex, 'hex')))
}

// ---------------------------------------------------------------- the node

// Connection encrypters by --encrypter name, the preferred (proposed) first.
const ENCRYPTERS = { noise, tls }

// An encrypter that reports each connection it secured as a
// `connection:encrypted` event, with the muxer it agreed on during its own
// handshake (Noise extensions, TLS ALPN), or null when the muxer is left to
// multistream-select: js's connection objects do not say which happened.
function reporting (name) {
  const make = Object.hasOwn(ENCRYPTERS, name) ? ENCRYPTERS[name] : undefined
  if (make == null) {
    throw new Error(`--encrypter must be one of ${Object.keys(ENCRYPTERS).join(', ')}, not ${JSON.stringify(name)}`)
  }
  return (components) => {
    const encrypter = make()(components)
    for (const [method, direction] of [['secureInbound', 'inbound'], ['secureOutbound', 'outbound']]) {
      const secure = encrypter[method].bind(encrypter)
      encrypter[method] = async (connection, options) => {
        const result = await secure(connection, options)
        emit({
          event: 'connection:encrypted',
          peer_id: result.remotePeer.toString(),
          direction,
          encryption: encrypter.protocol,
          remote_addr: connection.remoteAddr?.toString() ?? null,
          handshake_muxer: result.streamMuxer?.protocol ?? null
        })
        return result
      }
    }
    return encrypter
  }
}

const services = {
  identify: identify(),
  ping: ping()
}
if (!argv['no-identify-push']) {
  services.identifyPush = identifyPush()
}

// The longest delay setTimeout honours (a larger one fires at once).
const NEVER_MS = 2 ** 31 - 1
// Values under /guts/<peer id>/<name> are records their owner signed (Guts's
// guts/dht/signed.py): uvarint seq | uvarint length | value | 64-byte Ed25519
// signature over "guts-dht-record:" | uvarint(len key) | key | uvarint seq |
// uvarint length | value. The highest seq wins, then the greater bytes.
const GUTS_NAMESPACE = 'guts'
const GUTS_RECORD_DOMAIN = new TextEncoder().encode('guts-dht-record:')

function readUvarint (bytes, pos) {
  let value = 0n
  let shift = 0n
  for (let i = 0; i < 9; i++) {
    if (pos >= bytes.length) throw new Error('truncated varint')
    const b = bytes[pos++]
    value |= BigInt(b & 0x7f) << shift
    if ((b & 0x80) === 0) return [value, pos]
    shift += 7n
  }
  throw new Error('varint too long')
}

function uvarint (value) {
  const out = []
  let v = BigInt(value)
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80)
    v >>= 7n
  }
  out.push(Number(v))
  return Uint8Array.from(out)
}

function concatBytes (...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

function decodeGutsRecord (record) {
  const [seq, at] = readUvarint(record, 0)
  const [length, start] = readUvarint(record, at)
  const end = start + Number(length)
  if (record.length !== end + 64) throw new Error('Guts record length does not match its value and signature')
  return { seq, value: record.subarray(start, end), signature: record.subarray(end) }
}

async function validateGutsRecord (key, record) {
  const parts = new TextDecoder().decode(key).split('/')
  if (parts.length < 4 || parts[1] !== GUTS_NAMESPACE || parts[3] === '') {
    throw new Error('Guts record key is not /guts/<peer id>/<name>')
  }
  const owner = peerIdFromString(parts[2])
  if (owner.publicKey == null) throw new Error('Guts record owner carries no public key')
  const { seq, value, signature } = decodeGutsRecord(record)
  const signed = concatBytes(GUTS_RECORD_DOMAIN, uvarint(key.length), key, uvarint(seq), uvarint(value.length), value)
  if (!(await owner.publicKey.verify(signed, signature))) throw new Error('Guts record signature is not its owner\'s')
}

function compareBytes (a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i] - b[i]
  }
  return a.length - b.length
}

function selectGutsRecord (key, records) {
  let best = 0
  for (let i = 1; i < records.length; i++) {
    const a = decodeGutsRecord(records[i]).seq
    const b = decodeGutsRecord(records[best]).seq
    if (a > b || (a === b && compareBytes(records[i], records[best]) > 0)) best = i
  }
  return best
}
// js's raw codec, for providing a bare multihash as a CID v1
const RAW_CODEC = 0x55
// CID text in any multibase multiformats knows (CID.parse alone reads
// base58btc and base32 only)
const ANY_BASE = Object.values(bases).map((b) => b.decoder).reduce((a, b) => a.or(b))
// the bases the `cid` command writes a CID v1 in
const MULTIBASE_NAMES = [
  'base16', 'base16upper', 'base32', 'base32upper', 'base32pad', 'base32padupper',
  'base36', 'base36upper', 'base58btc', 'base64', 'base64pad', 'base64url', 'base64urlpad'
]

if (argv.dht) {
  services.dht = kadDHT({
    protocol: argv['dht-protocol'],
    clientMode: false,
    // keep loopback addresses in answers and in the routing table
    peerInfoMapper: passthroughMapper,
    validators: { [GUTS_NAMESPACE]: validateGutsRecord },
    selectors: { [GUTS_NAMESPACE]: selectGutsRecord },
    ...(argv['dht-no-self-query']
      ? { querySelfInterval: NEVER_MS, initialQuerySelfInterval: NEVER_MS, allowQueryWithZeroPeers: true }
      : {})
  })
}
if (argv.gossipsub) {
  services.pubsub = gossipsub({
    // publishing with no peer yet is not an error for the tests
    allowPublishToZeroTopicPeers: true
  })
}

let connectionEncrypters
try {
  connectionEncrypters = (argv.encrypter ?? ['noise']).map(reporting)
} catch (err) {
  fatal(err)
}

// Transports by --transport name. QUIC (@chainsafe/libp2p-quic, a native
// module) is loaded only when asked for. Without --transport the peer runs
// TCP and WebSocket, plus QUIC when one of its --listen addresses is /quic-v1.
const TRANSPORTS = {
  tcp: async () => tcp(),
  ws: async () => webSockets(),
  quic: async () => {
    const { quic } = await import('@chainsafe/libp2p-quic')
    return quic()
  }
}

function transportNames (names, listen) {
  if (names != null) return names
  const defaults = ['tcp', 'ws']
  if (listen.some((ma) => /\/quic-v1(\/|$)/.test(ma))) defaults.push('quic')
  return defaults
}

async function makeTransports (names) {
  const made = []
  for (const name of new Set(names)) {
    const make = Object.hasOwn(TRANSPORTS, name) ? TRANSPORTS[name] : undefined
    if (make == null) {
      throw new Error(`--transport must be one of ${Object.keys(TRANSPORTS).join(', ')}, not ${JSON.stringify(name)}`)
    }
    made.push(await make())
  }
  return made
}

const listenAddrs = argv.listen ?? DEFAULT_LISTEN
const transports = await makeTransports(transportNames(argv.transport, listenAddrs)).catch(fatal)

const node = await createLibp2p({
  privateKey: await makePrivateKey(argv.seed).catch(fatal),
  addresses: { listen: listenAddrs },
  transports,
  connectionEncrypters,
  streamMuxers: [yamux()],
  connectionManager: {
    // stock js refuses more than 5 inbound connections/s per IP; tests open
    // many connections from loopback
    allow: ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128']
  },
  services,
  start: false
}).catch(fatal)

// identify results as js saw them, keyed by peer id string; waiters for peers
// whose identify has not completed yet
const identified = new Map()
const identifyWaiters = new Map()

function identifyToJson (result) {
  return {
    peer_id: result.peerId.toString(),
    protocols: [...(result.protocols ?? [])],
    agentVersion: result.agentVersion ?? null,
    protocolVersion: result.protocolVersion ?? null,
    listenAddrs: (result.listenAddrs ?? []).map(String),
    observedAddr: result.observedAddr == null ? null : result.observedAddr.toString(),
    publicKey: result.publicKey == null ? null : Buffer.from(result.publicKey).toString('hex'),
    signedPeerRecord: result.signedPeerRecord == null
      ? null
      : {
          seq: String(result.signedPeerRecord.seq),
          addresses: result.signedPeerRecord.addresses.map(String)
        },
    connection_id: result.connection?.id ?? null
  }
}

node.addEventListener('peer:connect', (evt) => {
  emit({ event: 'peer:connect', peer_id: evt.detail.toString() })
})
node.addEventListener('peer:disconnect', (evt) => {
  const id = evt.detail.toString()
  identified.delete(id)
  emit({ event: 'peer:disconnect', peer_id: id })
})
node.addEventListener('connection:open', (evt) => {
  emit({ event: 'connection:open', ...connectionToJson(evt.detail) })
})
node.addEventListener('connection:close', (evt) => {
  emit({ event: 'connection:close', ...connectionToJson(evt.detail) })
})
node.addEventListener('peer:identify', (evt) => {
  const info = identifyToJson(evt.detail)
  identified.set(info.peer_id, info)
  const waiters = identifyWaiters.get(info.peer_id) ?? []
  identifyWaiters.delete(info.peer_id)
  for (const w of waiters) w.resolve(info)
  emit({ event: 'peer:identify', ...info })
})

const hex = (bytes) => bytes == null ? null : Buffer.from(bytes).toString('hex')
const fromHex = (text, what) => {
  if (typeof text !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(text)) {
    throw new Error(`"${what}" must be a hex string`)
  }
  return Uint8Array.from(Buffer.from(text, 'hex'))
}

function pubsubMessageToJson (detail) {
  const { msg, msgId, propagationSource } = detail
  return {
    topic: msg.topic,
    from: msg.from?.toString() ?? null,
    seqno_hex: msg.sequenceNumber == null ? null : msg.sequenceNumber.toString(16).padStart(16, '0'),
    data_hex: hex(msg.data),
    // gossipsub hands the id over base64-encoded
    msg_id_hex: Buffer.from(msgId, 'base64').toString('hex'),
    signature_hex: hex(msg.signature),
    key_hex: msg.key == null ? null : hex(publicKeyToProtobuf(msg.key)),
    propagation_source: propagationSource.toString()
  }
}

function connectionToJson (conn) {
  return {
    peer_id: conn.remotePeer.toString(),
    id: conn.id,
    remote_addr: conn.remoteAddr.toString(),
    direction: conn.direction,
    status: conn.status,
    multiplexer: conn.multiplexer ?? null,
    encryption: conn.encryption ?? null,
    streams: conn.streams.length,
    rtt_ms: conn.rtt ?? null
  }
}

// ---------------------------------------------------------------- echo
//
// Writing fairly matters here. On every drain of the connection js-libp2p
// 3.3 lets streams flush their queued bytes in creation order, and the first
// one to fill the socket again marks every stream "needs drain". While old
// streams keep bytes queued, a young stream -- multistream-select for a new
// ping or identify stream, the connection monitor's ping -- waits; under
// sustained bulk writes on many streams that takes long enough (> 5 s) for
// js's own connection monitor to abort the connection. So echo writers here
// never leave bytes queued in a stream: they write one chunk only when the
// stream is not waiting for a drain, and yield a macrotask first so that js's
// own queued writes (run as microtasks on drain) go before them.

// Wait until a stream that needs a drain may be written again.
//
// Not stream.onDrain(): in @libp2p/utils 7.4.1 it keeps its first, resolved
// promise forever, so after one drain every later call returns at once.
function waitDrain (stream, signal) {
  if (!stream.writableNeedsDrain) {
    return Promise.resolve()
  }
  // a stream reset (or closed) before we got here never drains, and its
  // 'close' event is already past
  if (stream.writeStatus !== 'writable') {
    return Promise.reject(new Error(`stream ${stream.id} is ${stream.status}, write side ${stream.writeStatus}`))
  }
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      stream.removeEventListener('drain', onDrain)
      stream.removeEventListener('close', onClose)
      signal?.removeEventListener('abort', onAbort)
    }
    const onDrain = () => { cleanup(); resolve() }
    const onClose = (evt) => { cleanup(); reject(evt.error ?? new Error('stream closed while waiting for drain')) }
    const onAbort = () => { cleanup(); reject(signal.reason) }
    stream.addEventListener('drain', onDrain)
    stream.addEventListener('close', onClose)
    signal?.addEventListener('abort', onAbort)
  })
}

const nextMacrotask = () => new Promise((resolve) => setImmediate(resolve))

async function writeFair (stream, chunk, signal) {
  while (true) {
    await waitDrain(stream, signal)
    await nextMacrotask()
    signal?.throwIfAborted()
    if (stream.writeStatus !== 'writable') {
      throw new Error(`stream ${stream.id} is ${stream.status}, write side ${stream.writeStatus}`)
    }
    if (!stream.writableNeedsDrain) break
  }
  stream.send(chunk)
}

// Consume a stream's incoming bytes as a queue of chunks, pausing the stream
// (no yamux window updates) while more than ECHO_QUEUE_HIGH bytes wait.
//
// Event based on purpose: `for await (const buf of stream)` ends on
// 'remoteCloseWrite', which yamux dispatches *before* delivering the payload
// of a DATA frame that carries FIN, so the iterator would drop that payload.
function chunkReader (stream) {
  const chunks = []
  let queued = 0
  let total = 0
  let remoteClosed = false
  let error = null
  let wake = null
  let pausing = false
  const notify = () => { wake?.resolve(); wake = null }

  stream.maxReadBufferLength = ECHO_READ_BUFFER
  stream.addEventListener('message', (evt) => {
    eachChunk(evt.data, (buf) => {
      chunks.push(buf)
      queued += buf.byteLength
      total += buf.byteLength
    })
    if (queued > ECHO_QUEUE_HIGH && !pausing) {
      // not synchronously: this listener may run inside resume(), which
      // re-opens the yamux window *after* dispatching, undoing a pause made
      // here (the stream then buffers without bound and aborts)
      pausing = true
      queueMicrotask(() => {
        pausing = false
        if (queued > ECHO_QUEUE_HIGH && stream.readStatus === 'readable') stream.pause()
      })
    }
    notify()
  })
  stream.addEventListener('remoteCloseWrite', () => {
    remoteClosed = true
    // a FIN riding on a DATA frame is processed before its payload is
    // delivered: let that delivery happen first
    setTimeout(notify, 0)
  })
  stream.addEventListener('close', (evt) => {
    if (evt.error != null) error = evt.error
    remoteClosed = true
    setTimeout(notify, 0)
  })

  return {
    get total () { return total },
    // next chunk of at most max bytes, or null at the end of the stream
    async next (max) {
      while (true) {
        if (error != null) throw error
        if (chunks.length > 0) {
          let buf = chunks[0]
          if (buf.byteLength > max) {
            chunks[0] = buf.subarray(max)
            buf = buf.subarray(0, max)
          } else {
            chunks.shift()
          }
          queued -= buf.byteLength
          if (queued <= ECHO_QUEUE_LOW && stream.readStatus === 'paused') stream.resume()
          return buf
        }
        if (stream.readStatus === 'paused') {
          stream.resume() // dispatches any buffered bytes synchronously
          continue
        }
        if (remoteClosed && stream.readBufferLength === 0) return null
        wake = Promise.withResolvers()
        await wake.promise
      }
    }
  }
}

function eachChunk (data, fn) {
  if (data instanceof Uint8Array) {
    fn(data)
  } else {
    for (const buf of data) fn(buf)
  }
}

// Serve /guts/echo/1.0.0: send every byte back until the remote closes its
// write side, then close ours once everything is flushed.
async function handleEcho (stream, connection) {
  const peer = connection.remotePeer.toString()
  const reader = chunkReader(stream)
  try {
    while (true) {
      const buf = await reader.next(ECHO_CHUNK)
      if (buf == null) break
      await writeFair(stream, buf)
    }
    await stream.close()
    emit({ event: 'echo:served', peer_id: peer, bytes: reader.total, stream_id: stream.id })
  } catch (err) {
    log('echo stream from', peer, 'failed:', errorText(err))
    emit({ event: 'echo:failed', peer_id: peer, bytes: reader.total, stream_id: stream.id, error: errorText(err) })
    stream.abort(err)
  }
}

// Open one echo stream, send n pseudo-random bytes (AES-CTR keystream) while
// reading the echo, close the write side, read to the end; compare byte
// counts and sha256.
async function echoOne (conn, n, index, protocol, signal) {
  let stage = 'opening the stream'
  let sent = 0
  let received = 0
  let stream
  const onAbort = () => stream?.abort(signal.reason ?? new Error('aborted'))
  signal.addEventListener('abort', onAbort, { once: true })
  try {
    stream = await conn.newStream(protocol, { signal })
    const reader = chunkReader(stream)
    const recvHash = createHash('sha256')
    const reading = (async () => {
      while (true) {
        const buf = await reader.next(Infinity)
        if (buf == null) return
        received += buf.byteLength
        recvHash.update(buf)
      }
    })()
    reading.catch(() => {})

    stage = 'sending'
    const cipher = createCipheriv('aes-128-ctr', randomBytes(16), randomBytes(16))
    const zeros = Buffer.alloc(ECHO_CHUNK)
    const sentHash = createHash('sha256')
    while (sent < n) {
      const len = Math.min(ECHO_CHUNK, n - sent)
      const chunk = cipher.update(len === ECHO_CHUNK ? zeros : zeros.subarray(0, len))
      sentHash.update(chunk)
      await writeFair(stream, chunk, signal)
      sent += len
    }
    stage = 'closing the write side'
    await stream.close({ signal })
    stage = 'reading the echo'
    await reading
    stage = 'comparing'
    const sentDigest = sentHash.digest('hex')
    const recvDigest = recvHash.digest('hex')
    if (received !== n || sentDigest !== recvDigest) {
      throw new Error(`sent ${n} bytes (sha256 ${sentDigest}), got back ${received} bytes (sha256 ${recvDigest})`)
    }
    return sentDigest
  } catch (err) {
    const what = `echo stream ${index} failed while ${stage} (sent ${sent}/${n}, received ${received})`
    log(what, '-', err?.stack ?? err)
    stream?.abort(err)
    throw new Error(`${what}: ${errorText(err)}`, { cause: err })
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

// ---------------------------------------------------------------- commands

function targetOf (args) {
  if (args.addr != null) return multiaddr(args.addr)
  if (args.peer != null) return peerIdFromString(args.peer)
  throw new Error('command needs "peer" (a peer id) or "addr" (a multiaddr)')
}

async function peerIdOf (args, signal) {
  if (args.peer != null) return peerIdFromString(args.peer)
  if (args.addr != null) {
    const conn = await node.dial(multiaddr(args.addr), { signal })
    return conn.remotePeer
  }
  throw new Error('command needs "peer" (a peer id) or "addr" (a multiaddr)')
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function pingOnce (target, signal) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await node.services.ping.ping(target, { signal })
    } catch (err) {
      // js allows one outbound ping stream per connection; the connection
      // monitor's own ping may hold it for a moment
      if (err?.name === 'TooManyOutboundProtocolStreamsError' && attempt < 40) {
        await delay(25)
        continue
      }
      throw err
    }
  }
}

function waitIdentified (id, signal) {
  const known = identified.get(id)
  if (known != null) return Promise.resolve(known)
  const waiter = Promise.withResolvers()
  const list = identifyWaiters.get(id) ?? []
  list.push(waiter)
  identifyWaiters.set(id, list)
  const onAbort = () => {
    const rest = (identifyWaiters.get(id) ?? []).filter((w) => w !== waiter)
    if (rest.length > 0) identifyWaiters.set(id, rest)
    else identifyWaiters.delete(id)
    waiter.reject(new Error(`identify of ${id} did not complete: ${errorText(signal.reason)}`))
  }
  signal.addEventListener('abort', onAbort, { once: true })
  return waiter.promise.finally(() => signal.removeEventListener('abort', onAbort))
}

function info () {
  return {
    peer_id: node.peerId.toString(),
    addrs: node.getMultiaddrs().map(String),
    protocols: node.getProtocols()
  }
}

const commands = {
  async info () {
    return info()
  },

  async dial (args, signal) {
    if (args.addr == null) throw new Error('dial needs "addr"')
    const conn = await node.dial(multiaddr(args.addr), { signal })
    return connectionToJson(conn)
  },

  async ping (args, signal) {
    const target = targetOf(args)
    const count = args.count ?? 1
    const rtts = []
    for (let i = 0; i < count; i++) {
      if (i > 0 && args.interval_ms != null) await delay(args.interval_ms)
      rtts.push(await pingOnce(target, signal))
    }
    return { rtts_ms: rtts }
  },

  async identify (args, signal) {
    const peerId = await peerIdOf(args, signal)
    const id = peerId.toString()
    let result
    if (args.fresh === true) {
      const conn = node.getConnections(peerId)[0] ?? await node.dial(peerId, { signal })
      result = identifyToJson(await node.services.identify.identify(conn, { signal }))
    } else {
      result = await waitIdentified(id, signal)
    }
    const stored = await node.peerStore.get(peerId, { signal })
    const meta = (key) => {
      const v = stored.metadata.get(key)
      return v == null ? null : Buffer.from(v).toString('utf8')
    }
    return {
      ...result,
      peerStore: {
        protocols: [...stored.protocols],
        addresses: stored.addresses.map((a) => ({ addr: a.multiaddr.toString(), certified: a.isCertified })),
        agentVersion: meta('AgentVersion'),
        protocolVersion: meta('ProtocolVersion')
      }
    }
  },

  async echo (args, signal) {
    const target = targetOf(args)
    const n = args.bytes ?? 1024
    const s = args.streams ?? 1
    const protocol = args.protocol ?? ECHO_PROTOCOL
    if (!Number.isInteger(n) || n < 0) throw new Error('"bytes" must be a non-negative integer')
    if (!Number.isInteger(s) || s < 1) throw new Error('"streams" must be a positive integer')
    // all streams share one connection (an existing one if there is any)
    const conn = await node.dial(target, { signal })
    const group = new AbortController()
    setMaxListeners(Infinity, group.signal)
    const onAbort = () => group.abort(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
    const start = performance.now()
    try {
      const digests = await Promise.all(Array.from({ length: s }, (_, i) =>
        echoOne(conn, n, i, protocol, group.signal).catch((err) => {
          group.abort(err)
          throw err
        })
      ))
      const ms = performance.now() - start
      return {
        bytes: n,
        streams: s,
        ms: Math.round(ms * 1000) / 1000,
        // payload rate, one direction (the same bytes also came back)
        mib_per_s: ms > 0 ? Math.round((n * s / 1048576) / (ms / 1000) * 100) / 100 : null,
        sha256: digests.length <= 8 ? digests : digests.slice(0, 8)
      }
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  },

  // ------------------------------------------------------------ CIDs

  // A CID as multiformats reads and writes it: from its text ("cid", any
  // multibase), or made from "data_hex" (hashed with sha2-256) or
  // "multihash_hex", with "codec" (a number; raw by default) and "version"
  // (1 by default).
  async cid (args) {
    let cid
    if (args.cid != null) {
      cid = CID.parse(args.cid, ANY_BASE)
    } else {
      const digest = args.data_hex != null
        ? await sha256.digest(fromHex(args.data_hex, 'data_hex'))
        : Digest.decode(fromHex(args.multihash_hex, 'multihash_hex'))
      const version = args.version ?? 1
      cid = version === 0 ? CID.createV0(digest) : CID.createV1(args.codec ?? RAW_CODEC, digest)
    }
    const texts = {}
    if (cid.version === 0) {
      texts.base58btc = cid.toString()
    } else {
      for (const base of Object.values(bases)) {
        if (MULTIBASE_NAMES.includes(base.name)) texts[base.name] = cid.toString(base.encoder)
      }
    }
    return {
      version: cid.version,
      codec: cid.code,
      multihash_hex: hex(cid.multihash.bytes),
      bytes_hex: hex(cid.bytes),
      text: cid.toString(),
      texts
    }
  },

  // ------------------------------------------------------------ kad-dht

  async 'dht:closest' (args, signal) {
    const key = fromHex(args.key_hex, 'key_hex')
    const peers = new Map()
    for await (const event of dhtService().getClosestPeers(key, { signal })) {
      if (event.name === 'FINAL_PEER') peers.set(event.peer.id.toString(), await peerInfoToJson(event.peer))
    }
    return { peers: [...peers.values()] }
  },

  async 'dht:find-peer' (args, signal) {
    if (args.peer == null) throw new Error('dht:find-peer needs "peer"')
    for await (const event of dhtService().findPeer(peerIdFromString(args.peer), { signal })) {
      if (event.name === 'FINAL_PEER') return await peerInfoToJson(event.peer)
    }
    throw new Error(`NotFoundError: peer ${args.peer} not found`)
  },

  async 'dht:provide' (args, signal) {
    for await (const _ of dhtService().provide(providerCid(args), { signal })) {} // eslint-disable-line no-unused-vars
    return {}
  },

  async 'dht:find-providers' (args, signal) {
    const providers = new Map()
    for await (const event of dhtService().findProviders(providerCid(args), { signal })) {
      if (event.name !== 'PROVIDER') continue
      for (const p of event.providers) providers.set(p.id.toString(), await peerInfoToJson(p))
      if (args.count != null && providers.size >= args.count) break
    }
    return { providers: [...providers.values()] }
  },

  async 'dht:put' (args, signal) {
    const key = fromHex(args.key_hex, 'key_hex')
    const value = fromHex(args.value_hex, 'value_hex')
    for await (const _ of dhtService().put(key, value, { signal })) {} // eslint-disable-line no-unused-vars
    return {}
  },

  async 'dht:get' (args, signal) {
    const key = fromHex(args.key_hex, 'key_hex')
    let value = null
    for await (const event of dhtService().get(key, { signal })) {
      if (event.name === 'VALUE') value = event.value
    }
    if (value == null) throw new Error(`NotFoundError: no value for key ${args.key_hex}`)
    return { value_hex: hex(value) }
  },

  async 'dht:routing-table' () {
    const table = dhtService().routingTable
    return { peers: [...table.kb.toIterable()].map((p) => p.peerId.toString()), size: table.size }
  },

  // ------------------------------------------------------------ gossipsub

  async 'pubsub:subscribe' (args) {
    pubsubService().subscribe(topicOf(args))
    return {}
  },

  async 'pubsub:unsubscribe' (args) {
    pubsubService().unsubscribe(topicOf(args))
    return {}
  },

  async 'pubsub:publish' (args) {
    const pubsub = pubsubService()
    const data = fromHex(args.data_hex ?? '', 'data_hex')
    lastPublished = null
    const result = await pubsub.publish(topicOf(args), data)
    return { msg_id_hex: lastPublished, recipients: result.recipients.map(String) }
  },

  async 'pubsub:mesh' (args) {
    return { peers: pubsubService().getMeshPeers(topicOf(args)) }
  },

  async 'pubsub:subscribers' (args) {
    return { peers: pubsubService().getSubscribers(topicOf(args)).map(String) }
  },

  async 'pubsub:peers' () {
    return { peers: pubsubService().getPeers().map(String) }
  },

  async 'pubsub:score' (args) {
    if (args.peer == null) throw new Error('pubsub:score needs "peer"')
    return { score: pubsubService().getScore(args.peer) }
  },

  async peers () {
    const byPeer = new Map()
    for (const conn of node.getConnections()) {
      const id = conn.remotePeer.toString()
      const entry = byPeer.get(id) ?? { peer_id: id, addrs: [], connections: [] }
      entry.addrs.push(conn.remoteAddr.toString())
      entry.connections.push(connectionToJson(conn))
      byPeer.set(id, entry)
    }
    return { peers: [...byPeer.values()] }
  },

  async hangup (args, signal) {
    await node.hangUp(targetOf(args), { signal })
    return {}
  }
}

function dhtService () {
  if (node.services.dht == null) throw new Error('the DHT is off: start the peer with --dht')
  return node.services.dht
}

function pubsubService () {
  if (node.services.pubsub == null) throw new Error('gossipsub is off: start the peer with --gossipsub')
  return node.services.pubsub
}

function topicOf (args) {
  if (typeof args.topic !== 'string' || args.topic === '') throw new Error('command needs "topic"')
  return args.topic
}

// a provider key is a CID's text ("cid"), or a multihash ("key_hex") that js
// provides and looks up as the CID v1 raw of it
function providerCid (args) {
  if (args.cid != null) return CID.parse(args.cid, ANY_BASE)
  return CID.createV1(RAW_CODEC, Digest.decode(fromHex(args.key_hex, 'key_hex')))
}

// a DHT answer's peer info, with the peer store's addresses when the answer
// carried none (getClosestPeers reports bare peer ids)
async function peerInfoToJson (info) {
  let addrs = (info.multiaddrs ?? []).map(String)
  if (addrs.length === 0) {
    try {
      addrs = (await node.peerStore.get(info.id)).addresses.map((a) => a.multiaddr.toString())
    } catch {}
  }
  return { peer_id: info.id.toString(), addrs: [...new Set(addrs)] }
}

// the id of the last message this node published (hex), noted inside
// gossipsub's publish()
let lastPublished = null

let stopping = false

async function shutdown (reply) {
  if (stopping) return
  stopping = true
  try {
    await Promise.race([node.stop(), delay(5000)])
  } catch (err) {
    log('error while stopping:', errorText(err))
  }
  if (reply != null) {
    process.stdout.write(JSON.stringify(reply) + '\n', () => process.exit(0))
  } else {
    process.exit(0)
  }
}

async function handleLine (line) {
  if (line.trim() === '') return
  let msg
  try {
    msg = JSON.parse(line)
  } catch (err) {
    emit({ id: null, ok: false, error: `bad JSON command: ${err.message}` })
    return
  }
  const id = msg.id ?? null
  const { cmd, ...args } = msg
  delete args.id
  if (cmd === 'stop') {
    await shutdown({ id, ok: true })
    return
  }
  const fn = Object.hasOwn(commands, cmd) ? commands[cmd] : undefined
  if (fn == null) {
    emit({ id, ok: false, error: `unknown command ${JSON.stringify(cmd)}` })
    return
  }
  const signal = AbortSignal.timeout(args.timeout_ms ?? DEFAULT_TIMEOUT_MS)
  try {
    const result = await fn(args, signal)
    emit({ ...result, id, ok: true })
  } catch (err) {
    log(`command ${cmd} (id ${id}) failed:`, err?.stack ?? err)
    emit({ id, ok: false, error: errorText(err) })
  }
}

// ---------------------------------------------------------------- main

if (node.services.pubsub != null) {
  const pubsub = node.services.pubsub
  if (argv['gossip-protocol'] != null) {
    // offer (and serve) only these meshsub versions; gossipsub 17.1.1 ignores
    // a `protocols` option, so set the list it registers on start
    pubsub.protocols = [...argv['gossip-protocol']]
  }
  // record the id of each message we publish: gossipsub notes it here, and
  // only for its own messages
  const published = pubsub.publishedMessageIds
  const put = published.put.bind(published)
  published.put = (id, ...rest) => {
    lastPublished = Buffer.from(id, 'base64').toString('hex')
    return put(id, ...rest)
  }
  pubsub.addEventListener('gossipsub:message', (evt) => {
    emit({ event: 'pubsub:message', ...pubsubMessageToJson(evt.detail) })
  })
}

try {
  await node.handle(ECHO_PROTOCOL, handleEcho, {
    maxInboundStreams: ECHO_MAX_STREAMS,
    maxOutboundStreams: ECHO_MAX_STREAMS
  })
  await node.start()
} catch (err) {
  fatal(err)
}

emit({ event: 'ready', ...info() })

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', (line) => {
  handleLine(line).catch((err) => log('command loop error:', err?.stack ?? err))
})
rl.on('close', () => {
  // the driver went away: leave quietly
  shutdown(null)
})
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => shutdown(null))
}
