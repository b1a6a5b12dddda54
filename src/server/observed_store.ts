/**
 * A {@link CommandStore} seen from outside: every call is timed for the metrics, and every change
 * to a command is published to its event streams and counted (deliveries, redeliveries, finished
 * commands, expired leases, live output), whichever route made it; a write that committed a change
 * is told to {@link StoreObservers.committed}, a read that succeeded to {@link StoreObservers.read}
 * and a failure to {@link StoreObservers.failed} (the store's health). The app wraps its store once; routes
 * stay unaware of events and metrics.
 *
 * @module
 */
import type {
  AckRequest,
  AppendOutputOutcome,
  CancelOutcome,
  CancelRunOutcome,
  CommandRecord,
  CommandStore,
  CreateRunOutcome,
  EnqueueOutcome,
  ExpireOutcome,
  OutputChunkInput,
  PruneCommandsOutcome,
  PruneOutputOutcome,
  RemovedAgent,
  ReportOutcome,
} from "../store/mod.ts";
import type { CommandEvents } from "./events.ts";
import type { DashboardMetrics } from "./metrics.ts";

/** What {@link observeStore} reports to. */
export interface StoreObservers {
  /** Event streams of commands. */
  events: CommandEvents;
  /** Metrics; none: only events. */
  metrics?: DashboardMetrics;
  /**
   * Called when a write committed a change (a store answers a call once its writes are
   * committed): the store has room, and works. A call that changed nothing (a claim of an empty
   * queue, a duplicate) is not one: a full disk lets those succeed.
   */
  committed?: () => void;
  /** Called when a call that only reads succeeded: the store reads again. */
  read?: () => void;
  /** Called with a call's failure, and whether the call only reads, before the caller sees it. */
  failed?: (error: unknown, read: boolean) => void;
}

type Method = keyof CommandStore;

/** The calls that only read (a claim, which writes what it finds, is not one). */
const READS: ReadonlySet<PropertyKey> = new Set<Method>([
  "getAgent",
  "listAgents",
  "listAgentsSeen",
  "countAgents",
  "hasAgentWithToken",
  "nextLeaseExpiry",
  "getCommand",
  "getCommandState",
  "existingCommandIds",
  "listCommands",
  "countCommandsByStatus",
  "countOpenCommands",
  "commandsInHand",
  "listOutput",
  "getRun",
  "listRuns",
  "listOpenRunIds",
  "listRunSummaries",
  "getRunState",
  "getRunTarget",
]);

/**
 * The longest run time a report is counted as in the duration histogram: a week, beyond any
 * command's deadline (a day at most) and its grace. A report's `duration_secs` may be any
 * non-negative number, and two of 1e308 s made the histogram's sum `+Inf` until a restart.
 */
const MAX_COUNTED_DURATION_SECS = 7 * 86_400;

/** Released commands remembered until their next delivery, at most. */
const RELEASED_MAX = 10_000;

/**
 * Wraps a store so that changes are published and counted.
 *
 * @param store The store.
 * @param observers Where changes go.
 * @returns A store with the same behaviour.
 */
export function observeStore(store: CommandStore, observers: StoreObservers): CommandStore {
  const { events, metrics } = observers;
  const committed = observers.committed ?? (() => {});
  // Commands a wait gave back to the queue (its client went away before the answer): the attempt
  // stays, so their next delivery is not told apart from a first one by the record itself.
  const released = new Set<string>();

  const delivered = (command: CommandRecord | null | undefined) => {
    if (!command) return;
    committed();
    events.publish(command.id);
    if (!metrics) return;
    if (command.attempt > 1) metrics.redeliveries.inc();
    else if (released.delete(command.id)) {
      // Timed at its first delivery already.
    } else if (command.deliveredAt !== null) {
      metrics.deliveryLatency.observe(Math.max(0, command.deliveredAt - command.createdAt) / 1000);
    }
  };

  const ended = (commands: readonly CommandRecord[]) => {
    if (commands.length > 0) committed();
    for (const command of commands) {
      events.publish(command.id);
      metrics?.commandsFinished.inc({ status: command.status });
    }
  };

  const after: Partial<Record<Method, (result: unknown, args: unknown[]) => void>> = {
    enqueue(result) {
      const outcome = result as EnqueueOutcome;
      if (outcome.outcome !== "created") return;
      committed();
      events.publish(outcome.command.id);
      // A part of a cancelled run is stored cancelled: it finished as it was made.
      if (outcome.command.status === "cancelled") {
        metrics?.commandsFinished.inc({ status: "cancelled" });
      }
      delivered(outcome.claimed);
    },
    claimNext(result) {
      delivered(result as CommandRecord | null);
    },
    release(result, args) {
      if (!result) return;
      committed();
      events.publish(args[0] as string);
      if (!metrics) return;
      released.add(args[0] as string);
      // Bounded: the oldest is forgotten (at worst, one delivery timed twice).
      if (released.size > RELEASED_MAX) released.delete(released.values().next().value!);
    },
    ack(result, args) {
      const outcome = result as { outcome: string; command?: CommandRecord };
      if (outcome.outcome !== "acked" || !outcome.command) return;
      // Acked before: answered as it is, nothing written.
      if (outcome.command.ackedAt === (args[0] as AckRequest).now) committed();
      events.publish(outcome.command.id);
    },
    report(result) {
      const outcome = result as ReportOutcome;
      if (outcome.outcome !== "accepted") return;
      committed();
      events.publish(outcome.command.id);
      metrics?.commandsFinished.inc({ status: outcome.command.status });
      const duration = outcome.command.result?.durationSecs;
      if (typeof duration === "number") {
        metrics?.commandDuration.observe(Math.min(duration, MAX_COUNTED_DURATION_SECS));
      }
    },
    cancel(result) {
      const outcome = result as CancelOutcome;
      if (outcome.outcome === "not_found" || outcome.outcome === "final") return;
      committed();
      events.publish(outcome.command.id);
      if (outcome.outcome === "cancelled") metrics?.commandsFinished.inc({ status: "cancelled" });
    },
    requeueExpired(result) {
      const outcome = result as ExpireOutcome;
      for (const [kind, commands] of Object.entries(outcome) as Array<[string, CommandRecord[]]>) {
        if (commands.length > 0) committed();
        for (const command of commands) {
          events.publish(command.id);
          // A queue expiry ends no lease: it is a finished command only.
          if (kind !== "expired") metrics?.leasesExpired.inc({ outcome: kind });
          if (kind !== "requeued") metrics?.commandsFinished.inc({ status: command.status });
        }
      }
    },
    removeAgent(result) {
      if (result) committed();
      // The agent's commands that were not final ended with it.
      ended((result as RemovedAgent | null)?.ended ?? []);
    },
    endCommandsOfRemovedAgent(result) {
      ended(result as CommandRecord[]);
    },
    appendOutput(result, args) {
      const outcome = result as AppendOutputOutcome;
      if (outcome.outcome !== "stored") return;
      committed();
      // Its live output alone: the command's status and result are as they were.
      events.publish((args[0] as OutputChunkInput).commandId, "output");
      metrics?.outputBytes.inc(outcome.bytes);
    },
    addAgent(result) {
      if (result) committed();
    },
    setAgentToken(result) {
      if (result) committed();
    },
    recordHeartbeat(result) {
      if (result) committed();
    },
    createRun(result) {
      if ((result as CreateRunOutcome).outcome === "created") committed();
    },
    cancelRun(result) {
      if ((result as CancelRunOutcome).outcome === "cancelled") committed();
    },
    pruneOutput(result) {
      if ((result as PruneOutputOutcome).chunks > 0) committed();
    },
    pruneCommands(result) {
      const outcome = result as PruneCommandsOutcome;
      if (outcome.commands + outcome.runs > 0) committed();
    },
  };

  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(store, {
    get(target, property) {
      const value = Reflect.get(target, property, target);
      if (typeof value !== "function" || typeof property !== "string" || property === "close") {
        return typeof value === "function" ? value.bind(target) : value;
      }
      let fn = wrapped.get(property);
      if (!fn) {
        const hook = after[property as Method];
        const reads = READS.has(property);
        const timer = metrics?.storeLatency.labels({ operation: property });
        // One `then`, not an async frame: every request makes several of these calls.
        fn = (...args: unknown[]) => {
          const started = performance.now();
          const timed = () => timer?.observe((performance.now() - started) / 1000);
          let pending: Promise<unknown>;
          try {
            pending = Promise.resolve(
              (value as (...a: unknown[]) => Promise<unknown>).apply(target, args),
            );
          } catch (error) {
            pending = Promise.reject(error);
          }
          return pending.then((result) => {
            timed();
            hook?.(result, args);
            if (reads) observers.read?.();
            return result;
          }, (error) => {
            timed();
            observers.failed?.(error, reads);
            throw error;
          });
        };
        wrapped.set(property, fn);
      }
      return fn;
    },
  });
}
