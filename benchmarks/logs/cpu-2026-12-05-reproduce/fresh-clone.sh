cd /work/fresh
export CI=true
s=$(date +%s); date -u +%T > /work/logs/fresh.start
make test > /work/logs/fresh-test.log 2>&1; echo "rc=$?" >> /work/logs/fresh-test.log
m=$(date +%s); echo "test_s=$((m-s))" > /work/logs/fresh.times
make reproduce PROFILE=smoke > /work/logs/fresh-smoke.log 2>&1; echo "rc=$?" >> /work/logs/fresh-smoke.log
e=$(date +%s); echo "smoke_s=$((e-m))" >> /work/logs/fresh.times
date -u +%T > /work/logs/fresh.end
