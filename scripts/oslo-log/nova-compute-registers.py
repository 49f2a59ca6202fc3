#!/usr/bin/python3
"""Writes the lines nova-compute logs when it registers its compute node, through the real oslo.log library with
its default format, using nova's own message templates (nova/compute/resource_tracker.py and manager.py), for a
compute host named after a container, as Kolla's nova-compute did before `host=` was pinned:
  nova-compute-registers.py LOG_FILE HOST [HOST...]
Each HOST is one start of the service (a container restart gives a new container ID)."""
import sys
import uuid

from oslo_config import cfg
from oslo_log import log as logging

CONF = cfg.CONF
logging.register_options(CONF)
log_file, hosts = sys.argv[1], sys.argv[2:]
CONF([], project='nova', prog='nova-compute')
CONF.set_override('log_file', log_file)
CONF.set_override('use_stderr', False)
logging.setup(CONF, 'nova')

manager = logging.getLogger('nova.compute.manager')
tracker = logging.getLogger('nova.compute.resource_tracker')
for host in hosts:
    # nova/compute/manager.py, then nova/compute/resource_tracker.py (2023.1 wording)
    manager.warning('No compute node record found for host %s. If this is the first time this service is '
                    'starting on this host, then you can ignore this warning.', host)
    tracker.warning('No compute node record for %(host)s:%(node)s', {'host': host, 'node': host})
    tracker.info('Compute node record created for %(host)s:%(node)s with uuid: %(uuid)s',
                 {'host': host, 'node': host, 'uuid': uuid.uuid4()})
