"""Pins the public surface: a change to what a module exports is a
deliberate edit of this file, not an accident (trio's test_exports.py)."""

import importlib

import pytest

PUBLIC = {
    'guts.dht': ['AddOutcome', 'AddResult', 'AddrScope', 'ConnectionType', 'DEFAULT_PROTOCOL', 'Dht', 'DhtConfig', 'DhtMode', 'DhtStore', 'GutsValidator', 'IPFS_PROTOCOL', 'KEY_BITS', 'KadMessage', 'KadPeer', 'Limits', 'Lookup', 'LookupConfig', 'LookupResult', 'LookupStats', 'MessageType', 'PeerState', 'ProviderRecord', 'ProviderStore', 'PublicKeyValidator', 'PublishResult', 'PutResult', 'Record', 'RecordLimits', 'RequestFailed', 'RoutingTable', 'StoredValue', 'Validator', 'ValueStore', 'bucket_index', 'decode_message', 'encode_message', 'kad_key'],
    'guts.errors': ['ConfigError', 'DecodeError', 'DialError', 'GutsError', 'HandshakeError', 'InputError', 'InvalidIdentity', 'InvalidRecord', 'InvalidRefs', 'InvalidRid', 'LocalProtocolError', 'NegotiationError', 'NodeNotRunning', 'PeerIdMismatch', 'PeerNotFound', 'ProtocolError', 'RecordNotFound', 'RemoteProtocolError', 'StreamReset'],
    'guts.wire': ['DialerNegotiation', 'LengthPrefixedDecoder', 'ListenerNegotiation', 'MAX_VARINT_BYTES', 'MULTISTREAM_PROTOCOL', 'MessageStream', 'NeedMoreData', 'NegotiatedStream', 'NegotiationLimit', 'accept_protocol', 'decode_uvarint', 'encode_length_prefixed', 'encode_line', 'encode_uvarint', 'select_protocol'],
    'guts.crypto': ['KeyPair', 'PublicKey', 'UnsupportedKeyType', 'load_or_create_keypair'],
    'guts.cid': ['CODECS', 'Cid', 'HASHES', 'InvalidCid', 'MULTIBASES', 'recognize_cid'],
    'guts.peer': ['InvalidPeerId', 'InvalidPeerIdBytes', 'InvalidPeerIdText', 'PeerId'],
    'guts.security.noise': ['CipherState', 'MAX_PLAINTEXT', 'NOISE_PROTOCOL_NAME', 'NoiseHandshake', 'NoiseIdentity', 'NoiseResult', 'NoiseStream', 'NoiseTransport', 'PROTOCOL_ID', 'noise_handshake'],
    'guts.mux.yamux': ['DataReceived', 'Event', 'Flag', 'FrameHeader', 'FrameType', 'GoAwayCode', 'GoAwayReceived', 'HEADER_SIZE', 'INITIAL_WINDOW', 'PROTOCOL_ID', 'PingAcknowledged', 'StreamEnded', 'StreamOpened', 'StreamReset', 'WindowUpdated', 'YamuxConfig', 'YamuxConnection', 'YamuxSession', 'YamuxStream', 'YamuxStreamReset', 'decode_header', 'encode_header'],
    'guts.multiaddr': ['Component', 'InvalidMultiaddr', 'InvalidMultiaddrBytes', 'InvalidMultiaddrText', 'MAX_BINARY_SIZE', 'MAX_TEXT_SIZE', 'Multiaddr'],
    'guts.mux': ['MuxedConnection', 'MuxedStream'],
    'guts.security': ['SecureChannel'],
    'guts.security.tls': ['CertificateError', 'EXTENSION_OID', 'LIBP2P_ALPN', 'MAX_CERTIFICATE_SIZE', 'PROTOCOL_ID', 'SIGNING_PREFIX', 'TlsConnection', 'TlsError', 'TlsIdentity', 'TlsState', 'TlsStream', 'UnsupportedHostKey', 'make_certificate', 'tls_handshake', 'verify_certificate', 'verify_certificate_chain'],
    'guts.transport.quic': ['QuicConfig', 'QuicConnection', 'QuicMuxedConnection', 'QuicStream', 'QuicTransport', 'quic_target'],
    'guts.transport': ['ConnectionHandler', 'MemoryConnection', 'MemoryLink', 'MemoryNetwork', 'MemoryTransport', 'RawConnection', 'TcpConnection', 'TcpTransport', 'Transport', 'UpgradedConnection', 'WebSocketConfig', 'WebSocketConnection', 'WebSocketTransport', 'memory_connection_pair'],
    'guts.upgrade': ['MUXERS', 'NOISE', 'SECURITY', 'Security', 'TLS', 'select_muxer', 'upgrade_inbound', 'upgrade_outbound'],
    'guts.host': ['Connection', 'Direction', 'Host', 'HostConfig', 'HostEvent', 'PeerConnected', 'PeerDisconnected', 'PeerIdentified', 'StreamHandler', 'open_host'],
    'guts.peerstore': ['MAX_ADDRS', 'MAX_PROTOCOLS', 'PeerInfo', 'Peerstore'],
    'guts.identify': ['AGENT_VERSION', 'IDENTIFY', 'IDENTIFY_PUSH', 'Identify', 'IdentifyInfo', 'PROTOCOL_VERSION', 'decode_identify', 'encode_identify'],
    'guts.gossip': ['ControlMessage', 'GossipConfig', 'GossipMessage', 'GossipRouter', 'Gossipsub', 'InvalidMessage', 'MESHSUB_V10', 'MESHSUB_V11', 'MESHSUB_V12', 'PROTOCOLS', 'RPC', 'RawMessage', 'Rejection', 'RouterStats', 'RpcLimits', 'ScoreParams', 'ScoreThresholds', 'SignaturePolicy', 'Subscription', 'TopicScoreParams', 'ValidationResult', 'Validator', 'decode_rpc', 'default_message_id', 'encode_rpc', 'hash_message_id', 'open_gossipsub'],
    'guts.ping': ['PING', 'PING_SIZE', 'Ping', 'ping'],
    'guts.home': ['CONFIG_FILE', 'CONTROL_SOCKET', 'KEY_FILE', 'default_home', 'prepare_home'],
    'guts.config': ['CONFIG_FILE', 'CONTROL_SOCKET', 'DEFAULT_DHT_PROTOCOL', 'DEFAULT_LISTEN', 'DHT_MODES', 'KEY_FILE', 'LIMIT_RANGES', 'NodeConfig', 'SECURITY_PROTOCOLS', 'default_home', 'load_config'],
    'guts.control': ['ApiError', 'ControlApi', 'ControlClient', 'ControlError', 'ControlSocket', 'bind_control_socket', 'connect_control', 'serve_control'],
    'guts.control.blocking': ['BlockingControlClient', 'ControlError'],
    'guts.control.node': ['open_controlled_node'],
    'guts.control.dht': ['OPERATIONS', 'add_dht_routes'],
    'guts.control.pubsub': ['add_pubsub_routes', 'message_json'],
    'guts.control.repo': ['add_repo_routes', 'state_json', 'summary_json'],
    'guts.control.keys': ['DhtKey', 'SHA2_256', 'dht_key', 'read_dht_key', 'record_key'],
    'guts.node': ['Node', 'expand_unspecified', 'open_node', 'repositories_config', 'seeding_policy', 'sync_config'],
    'guts.repo.packfiles': ['PackFile', 'pack_files'],
    'guts.replicate.providing': ['RepoProvider', 'find_seeds'],
    'guts.replicate.replicator': ['QUICK', 'Replicator'],
    'guts.replicate.announce': ['AnnounceLimits', 'Announcement', 'Assessment', 'ConflictingStatement', 'ForgedAnnouncement', 'HeldStatement', 'InvalidAnnouncement', 'MisdirectedAnnouncement', 'Outcome', 'OversizedAnnouncement', 'REFS_TOPIC_PREFIX', 'REPOSITORIES_TOPIC', 'RefsAnnounced', 'RepositoryAnnounced', 'Verified', 'VerifiedRefs', 'VerifiedRepository', 'announce_refs', 'announce_repository', 'assess', 'check_announcement', 'decode_announcement', 'encode_announcement', 'is_newer', 'refs_topic', 'topic_of', 'topic_rid'],
    'guts.replicate.coalesce': ['CoalesceConfig', 'Coalescer', 'FetchOrder', 'Wanted'],
    'guts.replicate.validator': ['AnnouncementValidator', 'announcement_validator'],
    'guts.replicate.policy': ['FetchDecision', 'NamespaceChoice', 'PolicyStatus', 'Refusal', 'SeedDecision', 'SeedLimits', 'SeedPolicy', 'SeedReason', 'SeedScope', 'SeedingPolicy', 'Seeds'],
    'guts.replicate.seeds': ['MAX_ROWS', 'SCHEMA_VERSION', 'SEEDS_FILE', 'SeedStore', 'SeedStoreError', 'SeedStoreFull'],
    'guts.repo.rid': ['RID_CODEC', 'Rid', 'URL_SCHEME'],
    'guts.repo.identity': ['IDENTITY_VERSION', 'Identity', 'IdentityLimits', 'SIGNING_DOMAIN', 'Signature', 'SignedRevision', 'create_genesis', 'sign_revision', 'signing_payload'],
    'guts.repo.revisions': ['VerifiedIdentity', 'propose_revision', 'verify_chain', 'verify_genesis', 'verify_revision'],
    'guts.repo.sigrefs': ['FORMAT_HEADER', 'MAX_SEQ', 'PUBLISHED_PREFIXES', 'RefsLimits', 'SignedStatement', 'Statement', 'Verdict', 'judge', 'next_statement', 'ref_problem', 'sign_statement'],
    'guts.repo.canonical': ['Candidate', 'Canonical', 'DelegateStatus', 'Descends', 'Divergence', 'ancestry_questions', 'compute_canonical'],
    'guts.repo.helper_commands': ['Capabilities', 'Command', 'Connect', 'Fetch', 'HelperLimits', 'InputEnded', 'List', 'Option', 'Push', 'PushSpec', 'ServiceData', 'StatelessConnect', 'StatelessRequest', 'c_quote', 'c_unquote'],
    'guts.repo.push_rules': ['HelperOptions', 'MAX_REPLICAS', 'OptionReply', 'OptionStatus', 'PushResult', 'RefRejected', 'RefUnchanged', 'RefUpdated', 'Rejection', 'judge_update', 'replicas_option'],
    'guts.repo.remote_helper': ['CAPABILITIES', 'Capabilities', 'Command', 'Connect', 'Fetch', 'HelperLimits', 'HelperOptions', 'HelperState', 'InputEnded', 'List', 'MAX_REPLICAS', 'Option', 'OptionReply', 'OptionStatus', 'Push', 'PushResult', 'PushSpec', 'RefRejected', 'RefUnchanged', 'RefUpdated', 'Rejection', 'RemoteHelper', 'ResponseTracker', 'ServiceData', 'StatelessConnect', 'StatelessRequest', 'c_quote', 'c_unquote', 'judge_update', 'replicas_option'],
    'guts.repo.pktline': ['Band', 'DELIM', 'DELIM_PKT', 'DataPacket', 'DelimPacket', 'FLUSH', 'FLUSH_PKT', 'FlushPacket', 'MAX_PAYLOAD', 'MAX_PKT_LEN', 'MAX_SIDEBAND_DATA', 'Packet', 'PktLineDecoder', 'RESPONSE_END', 'RESPONSE_END_PKT', 'ResponseEndPacket', 'ResponseTracker', 'SidebandPacket', 'demux_sideband', 'encode_data', 'encode_line', 'encode_packet', 'encode_packets', 'encode_sideband'],
    'guts.repo.refname': ['MAX_COMPONENT', 'MAX_REF_NAME', 'UNSAFE_CHARACTERS', 'branch_problem', 'check_branch_name', 'check_refname', 'decode_refname', 'is_valid_refname', 'refname_problem'],
    'guts.repo.storage': ['FSCK_LENIENT', 'InvalidRefName', 'NotConnected', 'ObjectReader', 'PackRejected', 'Quarantine', 'RID_PATTERN', 'RefUpdate', 'RefUpdateRejected', 'RepositoryExists', 'RepositoryNotFound', 'SourceRepository', 'Storage', 'StorageConfig', 'StorageError', 'check_rid'],
    'guts.repo.layout': ['AUTHOR', 'GitObject', 'IDENTITY_REF', 'LayoutCommit', 'LayoutRef', 'MAX_DATE', 'NAMESPACES', 'PROPOSALS', 'RefKind', 'commit_parents', 'encode_pack', 'identity_commit', 'namespace_prefix', 'namespace_ref', 'parse_ref', 'proposal_commit', 'proposal_ref', 'sigrefs_commit', 'sigrefs_ref', 'state_refs'],
    'guts.repo.state': ['BrokenRepository', 'FetchObjects', 'Namespace', 'RepoState', 'Repositories', 'RepositoriesConfig', 'StoredProposal'],
    'guts.sync': ['ADVERTISEMENT', 'FetchProgressed', 'Fetched', 'GetObjects', 'GetRefs', 'MAX_CANDIDATES', 'NoPeerServed', 'Objects', 'PeerAsked', 'PeerFailed', 'PeerOutraced', 'RACE_WIDTH', 'RaceEvent', 'Refs', 'Refused', 'RefusedReason', 'SYNC_PROTOCOL', 'SyncConfig', 'SyncError', 'SyncProgress', 'SyncRefused', 'SyncService', 'SyncStalled', 'UploadRequest', 'check_upload_request', 'decode_request', 'decode_response', 'encode_request', 'encode_response', 'fetch', 'fetch_first', 'filter_ls_refs'],
    'guts.sync.fetch': ['SyncProgress', 'fetch'],
    'guts.sync.protocol': ['BadInputLog', 'SyncService', 'UploadTooLarge'],
    'guts.sync.upload_rules': ['ADVERTISEMENT', 'UploadRequest', 'check_upload_request', 'filter_ls_refs'],
    'guts.replicate.seeding': ['Seeding', 'storage_bytes'],
    'guts.replicate.replicas': ['MAX_PEERS', 'ReplicaReport', 'ReplicaWatch', 'ReplicasConfig', 'find_replicas', 'wait_for_replicas'],
    'guts.sync.race': ['FetchProgressed', 'Fetched', 'MAX_CANDIDATES', 'NoPeerServed', 'PeerAsked', 'PeerFailed', 'PeerOutraced', 'RACE_WIDTH', 'RaceEvent', 'fetch_first'],
    'guts.sync.probe': ['held_seq', 'probe_seq'],
    'guts.repo.proposals': ['MAX_PROPOSALS', 'MIN_PREFIX', 'ProposalMerge', 'ProposalNotFound', 'changes', 'check_proposal', 'check_served', 'find_proposal', 'merge_proposals', 'proposal_id', 'signers'],
    'guts.connmgr': ['ConnLimits', 'ConnManager', 'ConnState', 'ConnWatch', 'RateLimiter', 'Refusal', 'SlotInfo', 'TokenBucket', 'subnet_of'],
    'guts.reputation': ['BLOCKS_FILE', 'Block', 'BlockListFull', 'BlockStore', 'BlockStoreError', 'BlockStoreFull', 'Outcome', 'PeerGuard', 'Reputation', 'ReputationConfig', 'Target', 'Verdict', 'ip_of', 'parse_target', 'target_text'],
    'guts.ratelog': ['RateLimitedLog'],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == PUBLIC[module]
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is listed in __all__ but missing"


def test_import_guts_is_light() -> None:
    """`import guts` must not pull in the stack (the CLI imports lazily)."""
    import subprocess
    import sys

    code = "import sys, guts; print(','.join(m for m in ('trio', 'wsproto', 'typer', 'nacl') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""



def test_a_host_loads_tls_only_when_it_speaks_it() -> None:
    """TLS (aioquic, cryptography's X.509) costs about 20 MiB and 0.1 s to
    import: a host that never handshakes TLS never loads it."""
    import subprocess
    import sys

    code = "import sys, guts.host, guts.upgrade; print('aioquic' in sys.modules, 'guts.security.tls' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
    from guts.security.tls import PROTOCOL_ID
    from guts.upgrade import TLS

    assert TLS == PROTOCOL_ID
