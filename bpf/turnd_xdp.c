// SPDX-License-Identifier: MIT OR Apache-2.0
//
// turnd's kernel fast path for TURN channels (RFC 8656 §12), IPv4 over UDP.
//
// client -> peer: a ChannelData datagram from a client to a listener, on a
//   (client 5-tuple, channel) the engine approved (map chan_to_udp), leaves
//   as a plain UDP datagram from the allocation's relay address to the
//   channel's peer: the 4-byte header and any padding are removed.
// peer -> client: a UDP datagram to a relay port from a bound peer (map
//   udp_to_chan) leaves as ChannelData to the client from the listener,
//   unpadded (padding is optional over UDP, RFC 8656 §12.5).
//
// Both are sent back out of the interface they came in on (XDP_TX), with
// the Ethernet addresses swapped, IPv4 length and header checksum fixed,
// TTL reset to 64 and the UDP checksum set to 0 ("none", RFC 768).
// Anything else (IPv6, IP options, fragments, TCP, STUN, Send and Data
// indications, unknown channels, malformed ChannelData, datagrams that
// would grow past the configured size) is passed to the stack unchanged,
// so turnd's user space handles it exactly as without this program.
//
// Build: clang -O2 -g0 -target bpf -c bpf/turnd_xdp.c -o bpf/turnd_xdp.o
// The loader (src/net/offload/) reads the "maps" section for the map
// definitions below and patches their file descriptors into the program.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// The layout the loader reads from the "maps" section (16 bytes each).
struct turnd_map_def {
    __u32 type;
    __u32 key_size;
    __u32 value_size;
    __u32 max_entries;
};

// Addresses and ports are in network byte order, as on the wire.
struct chan_key {
    __u32 client_ip;
    __u32 listener_ip;
    __u16 client_port;
    __u16 listener_port;
    __u16 channel;
    __u16 pad;
};

struct peer_key {
    __u32 relay_ip;
    __u32 peer_ip;
    __u16 relay_port;
    __u16 peer_port;
};

// Map values: where to send, and what this binding relayed that way so
// far (user space reads them into the allocation's usage; the loader
// writes zeros on install).
struct peer_val {
    struct peer_key to;
    __u32 pad;
    __u64 packets;
    __u64 bytes;
};

struct chan_val {
    struct chan_key to;
    __u64 packets;
    __u64 bytes;
};

// Per-CPU counters (indices shared with src/net/offload/maps.rs).
enum {
    C2P_PACKETS = 0,
    C2P_BYTES = 1,
    P2C_PACKETS = 2,
    P2C_BYTES = 3,
    DROP_ADJUST = 4,    // bpf_xdp_adjust_head/tail refused: packet dropped
    PASS_MALFORMED = 5, // bound channel, length field wrong: to user space
    PASS_OVERSIZE = 6,  // would exceed max_ip_len: to user space
    COUNTERS = 8,
};

// Settings written by the loader; index 0: largest IPv4 datagram to send.
struct turnd_map_def chan_to_udp SEC("maps") = {
    .type = BPF_MAP_TYPE_HASH,
    .key_size = sizeof(struct chan_key),
    .value_size = sizeof(struct peer_val),
    .max_entries = 65536,
};

struct turnd_map_def udp_to_chan SEC("maps") = {
    .type = BPF_MAP_TYPE_HASH,
    .key_size = sizeof(struct peer_key),
    .value_size = sizeof(struct chan_val),
    .max_entries = 65536,
};

struct turnd_map_def counters SEC("maps") = {
    .type = BPF_MAP_TYPE_PERCPU_ARRAY,
    .key_size = sizeof(__u32),
    .value_size = sizeof(__u64),
    .max_entries = COUNTERS,
};

struct turnd_map_def settings SEC("maps") = {
    .type = BPF_MAP_TYPE_ARRAY,
    .key_size = sizeof(__u32),
    .value_size = sizeof(__u32),
    .max_entries = 1,
};

#define ETH_LEN 14
#define IP_LEN 20
#define UDP_LEN 8
#define HEADERS (ETH_LEN + IP_LEN + UDP_LEN)
#define CHANNEL_HEADER 4

static __always_inline void count(__u32 index, __u64 value)
{
    __u64 *slot = bpf_map_lookup_elem(&counters, &index);
    if (slot)
        *slot += value;
}

static __always_inline __u16 ip_checksum(struct iphdr *ip)
{
    __u16 *words = (__u16 *)ip;
    __u32 sum = 0;
    ip->check = 0;
#pragma unroll
    for (int i = 0; i < IP_LEN / 2; i++)
        sum += words[i];
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)~sum;
}

static __always_inline void swap_mac(struct ethhdr *eth)
{
    __u8 tmp[ETH_ALEN];
    __builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
    __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
    __builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
}

static __always_inline __u32 max_ip_len(void)
{
    __u32 zero = 0;
    __u32 *v = bpf_map_lookup_elem(&settings, &zero);
    return v ? *v : 1500;
}

// ChannelData -> UDP to the peer. `payload` is the UDP payload length.
static __always_inline int to_peer(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *ip,
                                   struct udphdr *udp, struct peer_val *val, __u16 payload)
{
    void *end = (void *)(long)ctx->data_end;
    __u8 *hdr = (__u8 *)(udp + 1);
    if ((void *)(hdr + CHANNEL_HEADER) > end)
        return XDP_PASS;
    __u16 len = ((__u16)hdr[2] << 8) | hdr[3];
    // Longer than the datagram, or trailing bytes beyond padding: the
    // engine decides (and counts) what to do with it.
    if (len + CHANNEL_HEADER > payload || payload - CHANNEL_HEADER - len > 3) {
        count(PASS_MALFORMED, 1);
        return XDP_PASS;
    }

    struct peer_key copy = val->to;
    struct peer_key *out = &copy;
    struct ethhdr e = *eth;
    struct iphdr i = *ip;
    swap_mac(&e);
    i.saddr = out->relay_ip;
    i.daddr = out->peer_ip;
    i.tot_len = bpf_htons(IP_LEN + UDP_LEN + len);
    i.ttl = 64;
    i.check = ip_checksum(&i);
    struct udphdr u = {
        .source = out->relay_port,
        .dest = out->peer_port,
        .len = bpf_htons(UDP_LEN + len),
        .check = 0,
    };

    if (bpf_xdp_adjust_head(ctx, CHANNEL_HEADER)) {
        count(DROP_ADJUST, 1);
        return XDP_DROP;
    }
    void *data = (void *)(long)ctx->data;
    end = (void *)(long)ctx->data_end;
    if (data + HEADERS > end) {
        count(DROP_ADJUST, 1);
        return XDP_DROP;
    }
    __builtin_memcpy(data, &e, ETH_LEN);
    __builtin_memcpy(data + ETH_LEN, &i, IP_LEN);
    __builtin_memcpy(data + ETH_LEN + IP_LEN, &u, UDP_LEN);

    // Padding, and anything after the IP datagram, goes.
    long extra = (long)(end - data) - (HEADERS + len);
    if (extra > 0 && bpf_xdp_adjust_tail(ctx, (int)-extra)) {
        count(DROP_ADJUST, 1);
        return XDP_DROP;
    }
    count(C2P_PACKETS, 1);
    count(C2P_BYTES, len);
    __sync_fetch_and_add(&val->packets, 1);
    __sync_fetch_and_add(&val->bytes, len);
    return XDP_TX;
}

// UDP from a peer -> ChannelData to the client.
static __always_inline int to_client(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *ip,
                                     struct chan_val *val, __u16 payload)
{
    struct chan_key copy = val->to;
    struct chan_key *out = &copy;
    __u32 total = IP_LEN + UDP_LEN + CHANNEL_HEADER + (__u32)payload;
    if (total > max_ip_len()) {
        count(PASS_OVERSIZE, 1);
        return XDP_PASS;
    }
    struct ethhdr e = *eth;
    struct iphdr i = *ip;
    swap_mac(&e);
    i.saddr = out->listener_ip;
    i.daddr = out->client_ip;
    i.tot_len = bpf_htons(total);
    i.ttl = 64;
    i.check = ip_checksum(&i);
    struct udphdr u = {
        .source = out->listener_port,
        .dest = out->client_port,
        .len = bpf_htons(UDP_LEN + CHANNEL_HEADER + payload),
        .check = 0,
    };
    __u16 channel_header[2] = {out->channel, bpf_htons(payload)};

    if (bpf_xdp_adjust_head(ctx, -CHANNEL_HEADER)) {
        count(DROP_ADJUST, 1);
        return XDP_DROP;
    }
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    if (data + HEADERS + CHANNEL_HEADER > end) {
        count(DROP_ADJUST, 1);
        return XDP_DROP;
    }
    __builtin_memcpy(data, &e, ETH_LEN);
    __builtin_memcpy(data + ETH_LEN, &i, IP_LEN);
    __builtin_memcpy(data + ETH_LEN + IP_LEN, &u, UDP_LEN);
    __builtin_memcpy(data + HEADERS, channel_header, CHANNEL_HEADER);
    count(P2C_PACKETS, 1);
    count(P2C_BYTES, payload);
    __sync_fetch_and_add(&val->packets, 1);
    __sync_fetch_and_add(&val->bytes, payload);
    return XDP_TX;
}

SEC("xdp")
int turnd_xdp(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl != 5 ||
        ip->protocol != IPPROTO_UDP)
        return XDP_PASS;
    // More fragments, or a fragment offset: not a whole datagram.
    if (ip->frag_off & bpf_htons(0x3fff))
        return XDP_PASS;
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > end)
        return XDP_PASS;
    __u16 ip_len = bpf_ntohs(ip->tot_len);
    __u16 udp_len = bpf_ntohs(udp->len);
    if (udp_len < UDP_LEN || ip_len != IP_LEN + udp_len || data + ETH_LEN + ip_len > end)
        return XDP_PASS;
    __u16 payload = udp_len - UDP_LEN;

    __u8 *first = (__u8 *)(udp + 1);
    // Channel numbers 0x4000-0x7FFF (RFC 8656 §12; 0x5000-0x7FFF as turnd
    // accepts them from RFC 5766 clients): the top two bits are 01.
    if (payload >= CHANNEL_HEADER && (void *)(first + 2) <= end && (first[0] >> 6) == 1) {
        struct chan_key key = {
            .client_ip = ip->saddr,
            .listener_ip = ip->daddr,
            .client_port = udp->source,
            .listener_port = udp->dest,
            .channel = *(__u16 *)first,
            .pad = 0,
        };
        struct peer_val *to = bpf_map_lookup_elem(&chan_to_udp, &key);
        if (to)
            return to_peer(ctx, eth, ip, udp, to, payload);
    }
    struct peer_key key = {
        .relay_ip = ip->daddr,
        .peer_ip = ip->saddr,
        .relay_port = udp->dest,
        .peer_port = udp->source,
    };
    struct chan_val *to = bpf_map_lookup_elem(&udp_to_chan, &key);
    if (to)
        return to_client(ctx, eth, ip, to, payload);
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
