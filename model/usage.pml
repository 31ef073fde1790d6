/*
 * hero_usage: the spool protocol and the push job, in Promela (spin).
 *
 * What is modelled, what is abstracted and why that is safe, and which
 * function implements each step: model/README.md. Run: model/check.sh.
 *
 * Two nodes push to one branch of the billing repository. Node 0 has two
 * keys: key 0 comes from hero_usage_record (submitted up to 3 times: after
 * a crash, and later again as a duplicate submission whose occurred_at
 * defaulted to "now", so possibly in a later hour and possibly after the
 * record was pushed and pruned); key 1 comes from a shell drop into
 * incoming/. Node 1 pushes one record to the same branch. Node 0's push job
 * is a main thread and a marking thread. Any process may be killed
 * (kill -9) at any step, up to MAXCRASH times each; the forge may lose a
 * reply, refuse a request as too large (413) or make a run give up on its
 * retries, up to MAXFAULT times per pushing node; and the two nodes'
 * commits race on the branch (500 / 403 PushRejected).
 *
 * Properties:
 *   no_double  (in every state): no key is in its node's hour files twice;
 *   no_loss    (in every state): an acknowledged record is pending, waiting
 *              in incoming/, or committed;
 *   at the end (every process done): every acknowledged record is
 *              committed exactly once.
 *
 * Planted bugs, each of which spin must find: -DBUG_BLIND_APPEND,
 * -DBUG_ACK_BEFORE_LINK, -DBUG_MARK_BEFORE_COMMIT, -DBUG_FORGET_PRUNED.
 */

#ifndef MAXCRASH
#define MAXCRASH 2
#endif
#ifndef MAXFAULT
#define MAXFAULT 2
#endif
/* A caller's crash only makes it try again: one is enough. */
#ifndef CALLER_CRASHES
#define CALLER_CRASHES 1
#endif
/* Node 1's push: one lost reply is enough to show it heals. */
#ifndef OTHER_FAULTS
#define OTHER_FAULTS 1
#endif

#define N 2                 /* nodes on the branch */
#define H 2                 /* hours */
#define K 2                 /* keys per node */
#define IX(n, k) ((n) * K + (k))
#define FX(n, h) ((n) * H + (h))
#define RX(n, h, k) (((n) * H + (h)) * K + (k))
#define BIT(k) (1 << (k))

/* Holders of a node's writers' lock (SPOOL/lock). */
#define FREE 0
#define PUSHER 2
#define MARKER 3

/* Each node's spool, per key. Every change is durable before a later step
 * depends on it (README, "Power loss"). */
bit pend[N * K];            /* pending/<digest of key>.toml */
bit sent[N * K];            /* sent/<digest of key>.toml */
bit led[N * K];             /* the key's ledger entry */
byte lh[N * K];             /* the hour of the record pending or sent */
bit inc[N * K];             /* a drop of the key waiting in incoming/ */
byte ih[N * K];             /* its hour */
byte wl[N];                 /* who holds the writers' lock (while it spans steps) */

/* What the callers were told: "recorded" or "duplicate" (exit 0), or, for
 * a drop, its rename into incoming/ and the sync after it. */
bit ack[N * K];

/* The billing repository: how often each key is in each hour file, each
 * file's blob sha (0: no file), the branch's head. */
byte rc[N * H * K];
byte rsha[N * H];
byte head;
byte version;               /* the last commit (and blob sha) handed out */

/* Node 0's marking thread: its inbox (one commit's keys at most) and the
 * keys it is marking. */
byte minbox[N];
byte mwork[N];

byte clients[N];            /* callers of a node still at work */
bit pdone[N];               /* a node's push job has stopped for good */

#define COMMITTED(n, k) (rc[RX(n, 0, k)] + rc[RX(n, 1, k)])

#define NO_DOUBLE \
    (COMMITTED(0, 0) <= 1 && COMMITTED(0, 1) <= 1 && \
     COMMITTED(1, 0) <= 1 && COMMITTED(1, 1) <= 1)

#define KEPT(n, k) \
    (!ack[IX(n, k)] || pend[IX(n, k)] || inc[IX(n, k)] || COMMITTED(n, k) > 0)

#define NO_LOSS (KEPT(0, 0) && KEPT(0, 1) && KEPT(1, 0) && KEPT(1, 1))

/* The invariants are asserted by every step that can falsify them: a
 * commit (no_double); an acknowledgement, a mark, the removal of a drop or
 * of a sent record (no_loss). As strong as an LTL [] claim, and cheaper. */
#define CHECK assert(NO_DOUBLE); assert(NO_LOSS)

/* A crash point: kill -9 of the process here, while it has crashes left.
 * There is one after every step that changes the spool or the billing
 * repository, and after handing work to the marking thread: a kill between
 * two such steps leaves what a kill right after the first leaves, since the
 * steps between only read (README, "Crashes"). The budgets are local, so
 * that partial-order reduction keeps the state space small. */
#define CRASH_POINT \
    if \
    :: crashes > 0 -> crashes--; goto crashed \
    :: true \
    fi

/* A fault of the forge, while the process has faults left. */
#define FAULT (faults > 0)

/* Spool::record_batch for one record of key k of node n, from the writers'
 * lock on: Linker::link (sent/, the ledger, then link(2) into pending/,
 * which fails on an existing name: a duplicate either way), Linker::finish
 * (unlink tmp, fsync pending/), the unlock. One atomic step: it holds the
 * lock, and whatever runs meanwhile either waits for the lock or only
 * reads. A kill inside it is a kill right after it (the lock dies with its
 * holder; tmp/ holds nothing anyone reads). */
inline link_record(n, k, hour) {
    atomic {
        wl[n] == FREE;
        if
        :: sent[IX(n, k)] || led[IX(n, k)] || pend[IX(n, k)] -> skip
        :: else -> pend[IX(n, k)] = 1; lh[IX(n, k)] = hour
        fi
    }
}

/* A caller of hero_usage_record for key k of node n, whose first
 * submission falls in hour0, submitting up to `tries` times. */
proctype recorder(byte n; byte k; byte hour0; byte tries) {
    byte hour = hour0;
    byte crashes = CALLER_CRASHES;
    do
    :: tries > 0 ->
        tries--;
#ifdef BUG_ACK_BEFORE_LINK
        atomic { ack[IX(n, k)] = 1; CHECK };
        CRASH_POINT;
#endif
        /* write_tmp: the tmp file written and fsynced (nothing visible) */
        link_record(n, k, hour);
        CRASH_POINT;        /* durable, not yet acknowledged */
        atomic { ack[IX(n, k)] = 1; CHECK };  /* recorded / duplicate, exit 0 */
        if
        :: hour = hour0
        :: hour = H - 1     /* the next submission defaults occurred_at */
        fi
    :: tries > 0 -> break   /* the caller submits no more */
    :: tries == 0 -> break
crashed:
        skip                /* the caller saw no exit 0: it may try again */
    od;
    clients[n]--
}

/* A shell script dropping key k into node n's incoming/ (mktemp in tmp/,
 * sync, mv into incoming/, sync incoming/): acknowledged by the rename. */
proctype dropper(byte n; byte k; byte hour) {
    atomic { inc[IX(n, k)] = 1; ih[IX(n, k)] = hour; ack[IX(n, k)] = 1; clients[n]-- }
}

/* Node 0's marking thread (push/drain/mark.rs, Marker): takes one commit's
 * keys from its inbox and marks them sent one rename at a time under the
 * writers' lock (Spool::mark_sent, fsync at the end). It dies with its
 * process: the pusher's crash clears its state. */
proctype marker(byte n) {
    byte k;
end_idle:
    do
    :: atomic { minbox[n] != 0 && mwork[n] == 0 -> mwork[n] = minbox[n]; minbox[n] = 0 }
    :: atomic {
        mwork[n] != 0 && (wl[n] == FREE || wl[n] == MARKER) ->
        wl[n] = MARKER;
        if
        :: mwork[n] & BIT(0) -> k = 0
        :: mwork[n] & BIT(1) -> k = 1
        fi;
        pend[IX(n, k)] = 0;
        sent[IX(n, k)] = 1;
        mwork[n] = mwork[n] & ~BIT(k);
        if :: mwork[n] == 0 -> wl[n] = FREE :: else fi;   /* fsync, unlock */
        k = 0;
        CHECK
       }
    :: atomic { pdone[n] && minbox[n] == 0 && mwork[n] == 0 -> break }
    od
}

/* Spool::mark_sent from the push's main thread (Drain::present: records the
 * remote file holds already): the writers' lock, one rename at a time (in
 * any order), the unlock with the last. */
inline mark_now(n, keys) {
    do
    :: keys == 0 -> break
    :: keys != 0 ->
        atomic {
            (wl[n] == FREE || wl[n] == PUSHER) -> wl[n] = PUSHER;
            if
            :: keys & BIT(0) -> k = 0
            :: keys & BIT(1) -> k = 1
            fi;
            pend[IX(n, k)] = 0;
            sent[IX(n, k)] = 1;
            keys = keys & ~BIT(k);
            if :: keys == 0 -> wl[n] = FREE :: else fi;
            k = 0;
            CHECK
        };
        CRASH_POINT
    od
}

/* Drain::plan_hour: read the hour's remote file (its records and its sha
 * come in one answer: Drain::read_hour, parse_hour_file) and merge by key
 * (merge_hour): a key the file holds already is marked sent now, the rest
 * makes the change. `keys`: the batch's keys of hour h. */
inline plan_hour(n, h, keys) {
    atomic {
        sha[h] = rsha[FX(n, h)];
        present = 0;
#ifndef BUG_BLIND_APPEND
        if :: (keys & BIT(0)) && rc[RX(n, h, 0)] > 0 -> present = present | BIT(0) :: else fi;
        if :: (keys & BIT(1)) && rc[RX(n, h, 1)] > 0 -> present = present | BIT(1) :: else fi;
#endif
        fresh[h] = keys & ~present;
        if
        :: fresh[h] != 0 -> planned = planned | BIT(h)
        :: else -> planned = planned & ~BIT(h)
        fi
    };
    mark_now(n, present)
}

/* The keys of the hours in chunk `ch`. */
#define CHUNK_KEYS(ch) \
    (((ch) & BIT(0) -> fresh[0] : 0) | ((ch) & BIT(1) -> fresh[1] : 0))

/* Commit outcomes. */
#define DONE 0
#define RACE 1
#define LOST 2

/* Node n's push job (push::run_logged), run after run by its scheduler. */
proctype pusher(byte n) {
    byte crashes = MAXCRASH;
    byte faults = MAXFAULT;
    byte k, h, keys, present, planned, ch, h0, stuck, outcome, old;
    byte sha[H], fresh[H], bk[H];
    bit single, stale, found;

/* Nothing is left in the locals between runs (spin would tell runs apart
 * by what the last one left in them). */
#define FORGET atomic { \
        k = 0; h = 0; keys = 0; present = 0; planned = 0; ch = 0; h0 = 0; \
        stuck = 0; outcome = 0; old = 0; sha[0] = 0; sha[1] = 0; \
        fresh[0] = 0; fresh[1] = 0; bk[0] = 0; bk[1] = 0; single = 0; stale = 0; \
        found = 0 \
    }

start:
    /* A run that would find nothing to ingest, push or prune changes
     * nothing: the scheduler's next run starts once there is something. */
    (clients[n] == 0 || pend[IX(n, 0)] || pend[IX(n, 1)] || inc[IX(n, 0)] ||
     inc[IX(n, 1)] || sent[IX(n, 0)] || sent[IX(n, 1)]);
    /* Spool::ingest_incoming (read_drop, record_batch, remove_drops): each
     * drop is linked as a recorded record is, then removed. */
    for (k : 0 .. K - 1) {
        if
        :: inc[IX(n, k)] ->
            link_record(n, k, ih[IX(n, k)]);
            CRASH_POINT;
            atomic { inc[IX(n, k)] = 0; CHECK };  /* fsync incoming/ */
            CRASH_POINT
        :: else
        fi
    }
    k = 0;
drain:
    /* Source::next: the marking thread finishes (Marker::finish), then
     * pending/ is indexed (Spool::index_pending) and a batch loaded. */
    atomic {
        minbox[n] == 0 && mwork[n] == 0;
        bk[0] = 0;
        bk[1] = 0;
        if :: pend[IX(n, 0)] && !(stuck & BIT(lh[IX(n, 0)])) -> bk[lh[IX(n, 0)]] = bk[lh[IX(n, 0)]] | BIT(0) :: else fi;
        if :: pend[IX(n, 1)] && !(stuck & BIT(lh[IX(n, 1)])) -> bk[lh[IX(n, 1)]] = bk[lh[IX(n, 1)]] | BIT(1) :: else fi;
        planned = 0;
        found = (bk[0] != 0 || bk[1] != 0)
    };
    /* Drain::batch: each hour planned... */
    if :: bk[0] != 0 -> plan_hour(n, 0, bk[0]) :: else fi;
    if :: bk[1] != 0 -> plan_hour(n, 1, bk[1]) :: else fi;
    atomic { bk[0] = 0; bk[1] = 0 };
    /* ...then the changed files committed in request-sized chunks
     * (Drain::chunks; after a 413 one file a request). */
    do
    :: planned == 0 -> break
    :: planned != 0 ->
        ch = (single && (planned & BIT(0)) -> BIT(0) : planned);
#ifdef BUG_MARK_BEFORE_COMMIT
        keys = CHUNK_KEYS(ch);
        mark_now(n, keys);
#endif
send:
        /* Drain::send. A 413 (Drain::too_large): halve the chunk, the run
         * keeps the smaller size; a file refused alone leaves its hour
         * pending this run (exit 75). */
        if
        :: faults > 0 ->
            faults--;
            if
            :: ch == (BIT(0) | BIT(1)) -> single = 1
            :: ch == BIT(0) -> stuck = stuck | BIT(0); planned = planned & ~BIT(0)
            :: ch == BIT(1) -> stuck = stuck | BIT(1); planned = planned & ~BIT(1)
            fi;
            goto next_chunk
        :: true
        fi;
        /* The forge clones the branch and checks each file's sha... */
        atomic {
            h0 = head;
            stale = ((ch & BIT(0)) && sha[0] != rsha[FX(n, 0)]) ||
                    ((ch & BIT(1)) && sha[1] != rsha[FX(n, 1)])
        };
        if
        :: stale ->
            /* 409 / 422: the chunk's hours read and merged again
             * (Drain::replan), or the retries are used up (exit 75). */
            if
            :: FAULT -> faults--; goto close
            :: true
            fi;
            if :: ch & BIT(0) -> keys = fresh[0]; plan_hour(n, 0, keys) :: else fi;
            if :: ch & BIT(1) -> keys = fresh[1]; plan_hour(n, 1, keys) :: else fi;
            keys = 0;
            ch = ch & planned;
            if
            :: ch == 0 -> goto next_chunk
            :: else -> goto send
            fi
        :: else
        fi;
        /* ...commits, and pushes: a push beaten by another commit to the
         * branch since the clone is rejected (500 / 403 PushRejected). */
        atomic {
            if
            :: head != h0 -> outcome = RACE
            :: else ->
                version++;
                if
                :: ch & BIT(0) ->
                    rc[RX(n, 0, 0)] = rc[RX(n, 0, 0)] + ((fresh[0] & BIT(0)) -> 1 : 0);
                    rc[RX(n, 0, 1)] = rc[RX(n, 0, 1)] + ((fresh[0] & BIT(1)) -> 1 : 0);
                    rsha[FX(n, 0)] = version
                :: else
                fi;
                if
                :: ch & BIT(1) ->
                    rc[RX(n, 1, 0)] = rc[RX(n, 1, 0)] + ((fresh[1] & BIT(0)) -> 1 : 0);
                    rc[RX(n, 1, 1)] = rc[RX(n, 1, 1)] + ((fresh[1] & BIT(1)) -> 1 : 0);
                    rsha[FX(n, 1)] = version
                :: else
                fi;
                head = version;
                outcome = DONE;
                CHECK
            fi;
            h0 = 0
        };
        if
        :: outcome == RACE ->
            /* Sent again after a random wait, as it was; or given up. */
            if
            :: FAULT -> faults--; goto close
            :: true
            fi;
            goto send
        :: outcome == DONE && FAULT ->
            /* The reply is lost: sent again as it was (a 409 / 422 will
             * tell that it landed), or the retries are used up. */
            faults--;
            CRASH_POINT;
            if
            :: goto send
            :: goto close
            fi
        :: outcome == DONE
        fi;
        CRASH_POINT;        /* committed, nothing marked yet */
        /* Drain::committed: the keys go to the marking thread (Marker::mark;
         * its inbox holds one commit's keys at most). */
        keys = CHUNK_KEYS(ch);
#ifndef BUG_MARK_BEFORE_COMMIT
        atomic { minbox[n] == 0 -> minbox[n] = keys };
#endif
        keys = 0;
        planned = planned & ~ch;
        CRASH_POINT;        /* the marking thread may be at work */
next_chunk:
        skip
    od;
    /* A batch that found records is followed by another (Drain::drain:
     * each record was committed, found there, or its hour left stuck). */
    if
    :: found -> goto drain
    :: else
    fi;
close:
    FORGET;
    /* The marking thread finishes (Marker::finish, or Marker's Drop after
     * an error), then push::close prunes (Spool::prune_sent) the sent
     * records past retention, any of them: the ledger first, fsynced,
     * then the sent/ entries one by one. */
    atomic {
        minbox[n] == 0 && mwork[n] == 0 && wl[n] == FREE;
        if :: sent[IX(n, 0)] -> old = old | BIT(0) :: true fi;
        if :: sent[IX(n, 1)] -> old = old | BIT(1) :: true fi;
        if
        :: old != 0 ->
            wl[n] = PUSHER;
#ifndef BUG_FORGET_PRUNED
            if :: old & BIT(0) -> led[IX(n, 0)] = 1 :: else fi;
            if :: old & BIT(1) -> led[IX(n, 1)] = 1 :: else fi
#endif
        :: else
        fi
    };
    CRASH_POINT;
    do
    :: old == 0 -> break
    :: old != 0 ->
        atomic {
            if
            :: old & BIT(0) -> k = 0
            :: old & BIT(1) -> k = 1
            fi;
            sent[IX(n, k)] = 0;
            old = old & ~BIT(k);
            if :: old == 0 -> wl[n] = FREE :: else fi;
            k = 0;
            CHECK
        };
        CRASH_POINT
    od;
    /* The scheduler runs the job again; it stops for good once the node's
     * callers are done and nothing is left to push. */
    if
    :: atomic {
        clients[n] == 0 && !pend[IX(n, 0)] && !pend[IX(n, 1)] &&
        !inc[IX(n, 0)] && !inc[IX(n, 1)] -> pdone[n] = 1
       };
       goto stop
    :: else -> goto start
    fi;
crashed:
    /* kill -9: the locks it held are released, its marking thread dies. */
    atomic {
        if :: wl[n] == PUSHER || wl[n] == MARKER -> wl[n] = FREE :: else fi;
        minbox[n] = 0;
        mwork[n] = 0
    };
    FORGET;
    goto start;
stop:
    skip
}

/* Node 1 pushes to the same branch. Its spool runs the protocol checked for
 * node 0 and shares nothing with node 0's spool or hour files: what the
 * nodes share is the branch. So node 1 is its push of one acknowledged
 * pending record: read its hour file, merge by key, commit through the same
 * clone-then-push race, send again after a lost race or a lost reply, mark
 * sent (README, "Two nodes"). */
proctype other_node() {
    byte faults = OTHER_FAULTS;
    byte h0, sha;
    bit stale;
again:
    atomic {
        sha = rsha[FX(1, 0)];
        if
        :: rc[RX(1, 0, 0)] > 0 -> goto mark         /* there already */
        :: else
        fi
    };
send:
    atomic { h0 = head; stale = (sha != rsha[FX(1, 0)]) };
    if
    :: stale -> goto again
    :: else
    fi;
    atomic {
        if
        :: head != h0 -> goto send                  /* lost the race */
        :: else ->
            version++;
            rc[RX(1, 0, 0)]++;
            rsha[FX(1, 0)] = version;
            head = version;
            CHECK
        fi
    };
    if
    :: FAULT -> faults--; goto send                 /* the reply was lost */
    :: true
    fi;
mark:
    atomic { pend[IX(1, 0)] = 0; sent[IX(1, 0)] = 1; CHECK }
}

init {
    atomic {
        clients[0] = 2;
        pend[IX(1, 0)] = 1;
        ack[IX(1, 0)] = 1;
        run recorder(0, 0, 0, 3);
        run dropper(0, 1, 1);
        run pusher(0);
        run marker(0);
        run other_node()
    };
    /* Every process done: every acknowledged record committed exactly once. */
    _nr_pr == 1;
    assert(!ack[IX(0, 0)] || COMMITTED(0, 0) == 1);
    assert(!ack[IX(0, 1)] || COMMITTED(0, 1) == 1);
    assert(!ack[IX(1, 0)] || COMMITTED(1, 0) == 1);
    assert(!ack[IX(1, 1)] || COMMITTED(1, 1) == 1)
}
