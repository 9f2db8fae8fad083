#!/bin/sh
# FlatRun's agent's notifyNginxUnblockIP (see flatrun-agent.sh).
curl -s -X POST -H "Content-Type: application/json" -d '{"ip":"192.0.2.9"}' http://127.0.0.1:8081/_internal/security/unblock-ip
