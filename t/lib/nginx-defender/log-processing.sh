#!/bin/bash
# Real-time log processing

tail -F /var/log/nginx/access.log | while read line; do
    # Extract IP from log line
    IP=$(echo "$line" | awk '{print $1}')

    # Send to nginx-defender for analysis
    curl -X POST http://127.0.0.1:8080/api/analyze \
         -H "Content-Type: application/json" \
         -d "{\"log_entry\":\"$line\",\"ip\":\"$IP\"}"
done
