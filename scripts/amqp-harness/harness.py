#!/usr/bin/python3
"""A real oslo.messaging RPC server or client, for producing genuine AMQP-loss log lines.

Run with Debian's /usr/bin/python3 (python3-oslo.messaging, python3-oslo.log: scripts/amqp-harness/install.sh).

  harness.py server --service nova-compute --log-file /tmp/x/nova-compute.log --topic compute
  harness.py client --service nova-api --log-file /tmp/x/nova-api.log --topic compute \
                    --call-interval 1 --call-timeout 5

Everything that reaches the log file is written by oslo.log with its default format, so the lines look like any
OpenStack service's: `2026-11-25 21:37:50.159 12345 ERROR oslo_messaging._drivers.impl_rabbit [-] ...`. The loss
and reconnect lines come from oslo.messaging itself; the harness only adds its own lines (logger `amqp_harness`)
for each RPC call's outcome — success at INFO, a failure with LOG.exception the way an OpenStack service reports
an RPC call that raised (e.g. MessagingTimeout: "Timed out waiting for a reply to message ID ...").

The oslo.messaging options go into a generated config file (`--write-config PATH`, else a temporary file removed
at exit): [oslo_messaging_rabbit] rabbit_retry_interval, rabbit_retry_backoff, rabbit_interval_max,
heartbeat_timeout_threshold. The server uses the threading executor. Runs until SIGTERM or SIGINT, then stops the
RPC server / lets in-flight calls end and exits 0 (after at most --stop-grace seconds, even if RabbitMQ is down).
"""

import argparse
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from concurrent import futures

# SIGTERM and SIGINT are blocked before oslo is imported and taken by a thread of their own (sigwait in main()), not
# by a handler installed in main(): a SIGTERM during the imports (0.7 s alone, far longer on a loaded machine) killed
# the harness outright (exit status 143, where stop() expects 0), and Python runs a handler only in the main thread,
# between two bytecodes. Every thread, the libraries' too, inherits the mask, so only that thread takes them.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
print('amqp-harness: stop signals blocked; importing oslo', flush=True)  # the tests' cue (amqp-real)

from oslo_config import cfg  # noqa: E402 (after the signal mask)
from oslo_context import context as oslo_context  # noqa: E402
from oslo_log import log as logging  # noqa: E402
import oslo_messaging  # noqa: E402

CONF = cfg.CONF


def parse_args(argv):
    p = argparse.ArgumentParser(prog='harness.py', description=__doc__.split('\n\n')[0])
    p.add_argument('mode', choices=('server', 'client'))
    p.add_argument('--service', required=True, help='service name shown to the logger (e.g. nova-compute, nova-api)')
    p.add_argument('--log-file', required=True, help='where oslo.log writes')
    p.add_argument('--transport-url', default='rabbit://guest:guest@127.0.0.1:5672/')
    p.add_argument('--topic', default='amqp-harness')
    p.add_argument('--server-name', default=socket.gethostname(),
                   help='server: the RPC target server (nova: the host name); client: unused')
    p.add_argument('--heartbeat-timeout', type=int, default=60,
                   help='[oslo_messaging_rabbit] heartbeat_timeout_threshold; 0 disables heartbeats')
    p.add_argument('--heartbeat-rate', type=int, default=2, help='[oslo_messaging_rabbit] heartbeat_rate')
    p.add_argument('--retry-interval', type=int, default=1, help='[oslo_messaging_rabbit] rabbit_retry_interval (s)')
    p.add_argument('--retry-backoff', type=int, default=1, help='[oslo_messaging_rabbit] rabbit_retry_backoff (s)')
    p.add_argument('--retry-max', type=int, default=3, help='[oslo_messaging_rabbit] rabbit_interval_max (s)')
    p.add_argument('--call-interval', type=float, default=1.0, help='client: start an RPC call every S seconds')
    p.add_argument('--call-timeout', type=float, default=5.0, help='client: timeout of each call (s)')
    p.add_argument('--max-in-flight', type=int, default=16,
                   help='client: calls running at once (a call blocked on a dead broker holds one)')
    p.add_argument('--burst', type=int, default=0,
                   help='client: start with this many calls at once (the connection pool grows; the extra '
                        'connections then sit idle, watched only by their heartbeat thread)')
    p.add_argument('--reply-delay', type=float, default=0.0, help='server: sleep this long before answering')
    p.add_argument('--debug', action='store_true', help='oslo.log debug = True')
    p.add_argument('--write-config', help='write the generated oslo config here (kept); default: a temp file')
    p.add_argument('--stop-grace', type=float, default=10.0,
                   help='after SIGTERM, exit anyway once this many seconds have passed')
    p.add_argument('--keep-without-parent', action='store_true',
                   help='keep running when the parent process dies (default: stop, as after SIGTERM, so a '
                        'killed test run leaves no harness behind)')
    return p.parse_args(argv)


def write_config(args):
    text = '\n'.join([
        '# generated by scripts/amqp-harness/harness.py',
        '[DEFAULT]',
        f'transport_url = {args.transport_url}',
        f'log_file = {os.path.abspath(args.log_file)}',
        'use_stderr = false',
        f'debug = {"true" if args.debug else "false"}',
        '',
        '[oslo_messaging_rabbit]',
        f'rabbit_retry_interval = {args.retry_interval}',
        f'rabbit_retry_backoff = {args.retry_backoff}',
        f'rabbit_interval_max = {args.retry_max}',
        f'heartbeat_timeout_threshold = {args.heartbeat_timeout}',
        f'heartbeat_rate = {args.heartbeat_rate}',
        '',
    ])
    if args.write_config:
        path, temporary = args.write_config, False
        with open(path, 'w') as f:
            f.write(text)
    else:
        fd, path = tempfile.mkstemp(prefix=f'amqp-harness-{args.service}-', suffix='.conf')
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        temporary = True
    return path, temporary


class PingEndpoint(object):
    """What the server answers. The namespace/version are oslo.messaging's defaults."""

    target = oslo_messaging.Target(version='1.0')

    def __init__(self, log, server_name, reply_delay):
        self.log = log
        self.server_name = server_name
        self.reply_delay = reply_delay

    def ping(self, ctxt, seq):
        ctx = oslo_context.RequestContext.from_dict(ctxt or {})  # thread-local: the lines show its request id
        self.log.info('Received ping #%(seq)s from %(req)s', {'seq': seq, 'req': ctx.request_id})
        if self.reply_delay > 0:
            time.sleep(self.reply_delay)
        return {'seq': seq, 'server': self.server_name, 'pid': os.getpid()}


def run_server(args, transport, log, stop):
    target = oslo_messaging.Target(topic=args.topic, server=args.server_name)
    server = oslo_messaging.get_rpc_server(
        transport, target, [PingEndpoint(log, args.server_name, args.reply_delay)],
        executor='threading', access_policy=oslo_messaging.DefaultRPCAccessPolicy)
    server.start()
    log.info('RPC server %(server)s listening on topic %(topic)s', {'server': args.server_name, 'topic': args.topic})
    stop.wait()
    log.info('Stopping RPC server')
    server.stop()
    server.wait()


def run_client(args, transport, log, stop):
    target = oslo_messaging.Target(topic=args.topic, version='1.0')
    get_client = getattr(oslo_messaging, 'get_rpc_client', None)  # 14.1+; older ones only have RPCClient
    client = get_client(transport, target) if get_client else oslo_messaging.RPCClient(transport, target)
    pool = futures.ThreadPoolExecutor(max_workers=args.max_in_flight, thread_name_prefix='rpc-call')
    in_flight = threading.BoundedSemaphore(args.max_in_flight)

    def one_call(seq):
        try:
            ctx = oslo_context.RequestContext()  # a fresh request id per call, as an API request has
            started = time.monotonic()
            try:
                reply = client.prepare(timeout=args.call_timeout).call(ctx.to_dict(), 'ping', seq=seq)
            except oslo_messaging.MessagingTimeout:
                # The way an OpenStack service reports it: ERROR, the exception on the line, the traceback below.
                log.exception('RPC call ping #%(seq)s to topic %(topic)s failed after %(secs).3f s',
                              {'seq': seq, 'topic': args.topic, 'secs': time.monotonic() - started})
            except Exception:
                log.exception('RPC call ping #%(seq)s to topic %(topic)s raised after %(secs).3f s',
                              {'seq': seq, 'topic': args.topic, 'secs': time.monotonic() - started})
            else:
                log.info('RPC call ping #%(seq)s to topic %(topic)s answered by %(server)s in %(secs).3f s',
                         {'seq': seq, 'topic': args.topic, 'server': reply.get('server'),
                          'secs': time.monotonic() - started})
        finally:
            in_flight.release()

    log.info('RPC client calling ping on topic %(topic)s every %(every)s s (timeout %(timeout)s s)',
             {'topic': args.topic, 'every': args.call_interval, 'timeout': args.call_timeout})
    seq = 0
    for _ in range(min(args.burst, args.max_in_flight)):
        in_flight.acquire()
        seq += 1
        pool.submit(one_call, seq)
    next_at = time.monotonic() + (args.call_interval if seq else 0)
    while not stop.is_set():
        # A call stuck on a dead broker holds its slot: when all are taken, no new call starts (like an API
        # whose workers are all blocked) — the wait is the call interval, so SIGTERM is still seen.
        if in_flight.acquire(timeout=args.call_interval):
            seq += 1
            pool.submit(one_call, seq)
        next_at += args.call_interval
        stop.wait(max(0.0, next_at - time.monotonic()))
        if next_at < time.monotonic():
            next_at = time.monotonic()
    log.info('Stopping RPC client (%(n)s calls started)', {'n': seq})
    pool.shutdown(wait=True, cancel_futures=True)


def main(argv):
    args = parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.log_file)), exist_ok=True)
    config_path, temporary = write_config(args)

    stop = threading.Event()

    def on_signal(signum, _frame):
        if stop.is_set():
            return
        stop.set()

        def give_up():  # RabbitMQ down at SIGTERM can keep a stop() blocked in a reconnect loop
            time.sleep(args.stop_grace)
            logging.getLogger('amqp_harness').warning('Still stopping after %s s; exiting', args.stop_grace)
            if temporary:
                try:
                    os.unlink(config_path)
                except OSError:
                    pass
            os._exit(0)

        threading.Thread(target=give_up, daemon=True, name='stop-grace').start()

    # The stop signals, blocked in every thread (STOP_SIGNALS), are taken here.
    threading.Thread(target=lambda: on_signal(signal.sigwait(STOP_SIGNALS), None), daemon=True, name='signals').start()
    if not args.keep_without_parent:
        parent = os.getppid()

        def watch_parent():
            while not stop.is_set():
                if os.getppid() != parent:  # re-parented: whoever started us is gone
                    logging.getLogger('amqp_harness').warning('Parent process %s is gone; stopping', parent)
                    on_signal(signal.SIGTERM, None)
                    return
                time.sleep(1)

        threading.Thread(target=watch_parent, daemon=True, name='watch-parent').start()

    logging.register_options(CONF)
    CONF(['--config-file', config_path], project='amqp-harness', prog=args.service)
    logging.setup(CONF, args.service)
    log = logging.getLogger('amqp_harness.' + args.mode)
    transport = oslo_messaging.get_rpc_transport(CONF)
    try:
        (run_server if args.mode == 'server' else run_client)(args, transport, log, stop)
    finally:
        transport.cleanup()
        if temporary:
            os.unlink(config_path)
    log.info('Stopped')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
