#!/bin/sh
# The calls FlatRun's agent makes to nginx's internal API (its PR:
# notifyNginxBlockIP, notifyNginxUnblockIP, checkNginxInternalAPIReachable),
# verbatim: the curl commands it runs inside the nginx container, each
# `-d '%s'` filled with what its json.Marshal of the payload gives (keys
# sorted, no spaces). No token. Run against t/17-fidelity.t's nginx.
set -u
echo "== block-ip ttl=60"
curl -s -X POST -H "Content-Type: application/json" -d '{"ip":"192.0.2.9","ttl":60}' http://127.0.0.1:8081/_internal/security/block-ip
echo "== block-ip, the agent's permanent (1 year)"
curl -s -X POST -H "Content-Type: application/json" -d '{"ip":"192.0.2.10","ttl":31536000}' http://127.0.0.1:8081/_internal/security/block-ip
echo "== health check"
curl -s --connect-timeout 2 --max-time 5 -X POST http://127.0.0.1:8081/_internal/security/refresh-blocked-ips 2>/dev/null | grep -q success && echo yes || echo no
