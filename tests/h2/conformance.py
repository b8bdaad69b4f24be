"""ferrymesh's HTTP/2 server against PyPI h2's client: an HPACK encoder
(Huffman, dynamic table, table size updates), flow control, CONTINUATION,
padding, priority, RST_STREAM and GOAWAY that we did not write.

    python3 tests/h2/conformance.py 127.0.0.1:PORT

Each scenario prints "ok <name>"; the first failure raises. Upstream: the
test suite's HttpUpstream (/ok, /bytes/N, /slow/MS; POST answers "up got N").
"""
import socket
import sys

import h2.config
import h2.connection
import h2.events
import h2.settings


class Client:
    def __init__(self, addr, settings=None):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()
        self.responses = {}
        self.ended = set()
        self.resets = {}
        self.acked = None

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        for ev in self.conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                self.responses.setdefault(ev.stream_id, {})["headers"] = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                r = self.responses.setdefault(ev.stream_id, {})
                r["body"] = r.get("body", b"") + ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                self.responses.setdefault(ev.stream_id, {})["trailers"] = dict(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                self.resets[ev.stream_id] = ev.error_code
            elif isinstance(ev, h2.events.PingAckReceived):
                self.acked = ev.ping_data
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise ConnectionError(f"server sent GOAWAY ({ev.error_code!r})")
        self.flush()

    def wait(self, ids):
        while not all(i in self.ended or i in self.resets for i in ids):
            self.pump()

    def request(self, path, method="GET", body=None, extra=(), pad=None, open_body=False):
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":scheme", "http"), (":path", path), (":authority", "x")] + list(extra)
        self.conn.send_headers(sid, headers, end_stream=body is None and not open_body)
        self.flush()
        if body is not None:
            self.send_body(sid, body, pad)
        return sid

    def send_body(self, sid, body, pad=None):
        sent = 0
        while True:
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if pad:
                window -= pad + 1
            if window <= 0:
                self.pump()
                continue
            chunk = body[sent : sent + window]
            sent += len(chunk)
            last = sent >= len(body)
            self.conn.send_data(sid, chunk, end_stream=last, pad_length=pad)
            self.flush()
            if last:
                return

    def status(self, sid):
        return self.responses[sid]["headers"][":status"]


def scenario(name):
    def wrap(f):
        f.scenario = name
        return f

    return wrap


@scenario("huffman and the dynamic table over 200 requests, 50 at a time")
def many(addr):
    c = Client(addr)
    for batch in range(4):
        ids = [c.request("/ok", extra=[("x-batch", str(batch)), ("user-agent", "python-h2")]) for _ in range(50)]
        c.wait(ids)
        assert all(c.status(i) == "200" for i in ids), [c.status(i) for i in ids]


@scenario("table size updates from the client's encoder")
def table_sizes(addr):
    c = Client(addr)
    for size in (0, 256, 4096, 100, 4096):
        c.conn.encoder.header_table_size = size
        sid = c.request("/ok", extra=[("x-size", str(size))])
        c.wait([sid])
        assert c.status(sid) == "200"


@scenario("a 1 MB body under flow control, padded")
def big_body(addr):
    c = Client(addr)
    sid = c.request("/", method="POST", body=b"z" * 1_000_000, pad=7)
    c.wait([sid])
    assert c.status(sid) == "200" and c.responses[sid]["body"] == b"up got 1000000", c.responses[sid]


@scenario("a small receive window and SETTINGS changed mid-stream")
def small_window(addr):
    c = Client(addr, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100})
    sid = c.request("/bytes/50000")
    c.pump()
    c.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65535})
    c.flush()
    c.wait([sid])
    assert len(c.responses[sid]["body"]) == 50000


@scenario("a header block in CONTINUATION frames")
def continuation(addr):
    c = Client(addr)
    sid = c.request("/ok", extra=[("x-big", "v" * 40000)])
    c.wait([sid])
    assert c.status(sid) == "200"


@scenario("priority frames are accepted")
def priority(addr):
    c = Client(addr)
    sid = c.request("/slow/50")
    c.conn.prioritize(sid, weight=200)
    c.conn.prioritize(c.conn.get_next_available_stream_id() + 2, weight=10)
    c.flush()
    c.wait([sid])
    assert c.status(sid) == "200"


@scenario("RST_STREAM while waiting and while sending; the connection goes on")
def resets(addr):
    c = Client(addr)
    slow = c.request("/slow/300")
    c.conn.reset_stream(slow)
    posting = c.request("/", method="POST", open_body=True)
    c.conn.send_data(posting, b"partial")
    c.conn.reset_stream(posting, error_code=8)
    c.flush()
    sid = c.request("/ok")
    c.wait([sid])
    assert c.status(sid) == "200"


@scenario("ping, then GOAWAY from the client: the server closes")
def ping_goaway(addr):
    c = Client(addr)
    c.conn.ping(b"12345678")
    c.flush()
    while not c.acked:
        c.pump()
    sid = c.request("/ok")
    c.wait([sid])
    c.conn.close_connection()
    c.flush()
    # h2 takes nothing more once it has sent GOAWAY: read raw until the close.
    while c.sock.recv(65536):
        pass


def main():
    addr = sys.argv[1]
    for f in (many, table_sizes, big_body, small_window, continuation, priority, resets, ping_goaway):
        f(addr)
        print("ok", f.scenario, flush=True)


if __name__ == "__main__":
    main()
