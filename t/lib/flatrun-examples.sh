#!/bin/sh
# The curl examples of FlatRun's security documentation, verbatim, run
# against warden:api() on port 8090 (t/11-api.t). The wrapper only adds
# -s and prints each response's status after its body.
curl() { command curl -s -w ' %{http_code}\n' "$@"; }

curl -X POST "http://localhost:8090/api/security/blocked-ips" \
  -H "Authorization: Bearer $TOKEN" \
  -H "Content-Type: application/json" \
  -d '{
    "ip": "192.168.1.100",
    "reason": "Suspicious activity",
    "duration": 86400
  }'

curl -X DELETE "http://localhost:8090/api/security/blocked-ips/192.168.1.100" \
  -H "Authorization: Bearer $TOKEN"

curl -X POST "http://localhost:8090/api/security/protected-routes" \
  -H "Authorization: Bearer $TOKEN" \
  -H "Content-Type: application/json" \
  -d '{
    "path": "/admin",
    "method": "ALL",
    "auth_type": "basic",
    "credentials": "admin:secret",
    "deployment": "my-app"
  }'

curl -X POST "http://localhost:8090/api/security/whitelist" \
  -H "Authorization: Bearer $TOKEN" \
  -H "Content-Type: application/json" \
  -d '{
    "type": "ip",
    "value": "10.0.0.0/8",
    "description": "Internal network"
  }'

curl "http://localhost:8090/api/security/events?limit=50" \
  -H "Authorization: Bearer $TOKEN"

# Enable real-time capture
curl -X PUT "http://localhost:8090/api/security/realtime-capture" \
  -H "Authorization: Bearer $TOKEN" \
  -H "Content-Type: application/json" \
  -d '{"enabled": true}'

curl -X PUT "http://localhost:8090/api/deployments/my-app/security" \
  -H "Authorization: Bearer $TOKEN" \
  -H "Content-Type: application/json" \
  -d '{
    "enabled": true,
    "rate_limit": 50,
    "allowed_ips": ["10.0.0.0/8"],
    "blocked_paths": ["/wp-admin"]
  }'

curl -X POST "http://localhost:8090/api/security/refresh" \
  -H "Authorization: Bearer $TOKEN"

curl "http://localhost:8090/api/security/stats" \
  -H "Authorization: Bearer $TOKEN"

curl -X POST "http://localhost:8090/api/security/cleanup" \
  -H "Authorization: Bearer $TOKEN" \
  -H "Content-Type: application/json" \
  -d '{"older_than": 604800}'
