import { openPostgresStore } from "../../src/store/mod.ts";
import { pgIgnore, testDatabase } from "../_pg.ts";
import { runStoreContract } from "./contract.ts";

const ignore = pgIgnore();

if (!ignore) {
  runStoreContract("postgres", async () => {
    const db = await testDatabase();
    const store = await openPostgresStore(db.url);
    const close = store.close.bind(store);
    store.close = async () => {
      await close();
      await db.drop();
    };
    return store;
  });
}
