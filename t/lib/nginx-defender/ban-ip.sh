#!/bin/bash
# /etc/nginx-defender/ban-ip.sh

IP=$1
DURATION=${2:-3600}  # Default 1 hour
REASON=${3:-"nginx-defender auto-block"}

# Block via nginx-defender API
curl -X POST http://127.0.0.1:8080/api/block \
     -H "Content-Type: application/json" \
     -d "{\"ip\":\"$IP\",\"duration\":\"${DURATION}s\",\"reason\":\"$REASON\"}"

# Also block via iptables as backup
iptables -A INPUT -s $IP -j DROP

# Log the action
echo "$(date): Blocked $IP for ${DURATION}s - $REASON" >> /var/log/nginx-defender/blocks.log
