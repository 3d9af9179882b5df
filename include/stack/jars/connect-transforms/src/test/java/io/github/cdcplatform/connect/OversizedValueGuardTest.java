package io.github.cdcplatform.connect;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Map;

import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.SchemaBuilder;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.source.SourceRecord;
import org.junit.jupiter.api.Test;

class OversizedValueGuardTest {

    private static final String PLACEHOLDER = "__cdc_oversized_value__";
    private static final Schema ROW = SchemaBuilder.struct().name("row").optional()
            .field("id", Schema.STRING_SCHEMA)
            .field("device", Schema.OPTIONAL_STRING_SCHEMA)
            .field("raw_payload", Schema.OPTIONAL_STRING_SCHEMA)
            .field("duration_ms", Schema.OPTIONAL_INT64_SCHEMA)
            .build();
    private static final Schema ENVELOPE = SchemaBuilder.struct().name("envelope")
            .field("before", ROW).field("after", ROW).field("op", Schema.STRING_SCHEMA).build();

    private static Struct row(String id, String payload) {
        return new Struct(ROW).put("id", id).put("device", "tv").put("raw_payload", payload).put("duration_ms", 42L);
    }

    private static SourceRecord record(Struct before, Struct after, String op) {
        Struct value = new Struct(ENVELOPE).put("before", before).put("after", after).put("op", op);
        return new SourceRecord(Map.of(), Map.of("lsn", 1L), "cdc.public.engagement_events", 0,
                Schema.STRING_SCHEMA, "key-1", ENVELOPE, value);
    }

    private static OversizedValueGuard<SourceRecord> guard(long maxBytes) {
        OversizedValueGuard<SourceRecord> guard = new OversizedValueGuard<>();
        guard.configure(Map.of("max.bytes", String.valueOf(maxBytes), "placeholder", PLACEHOLDER));
        return guard;
    }

    @Test
    void aRecordThatFitsPassesUnchanged() {
        SourceRecord original = record(null, row("a", "x".repeat(1000)), "c");
        assertSame(original, guard(4096).apply(original));
    }

    @Test
    void anOversizedAfterImageKeepsItsKeyAndPositionAndLosesOnlyTheLargeField() {
        SourceRecord original = record(null, row("a", "x".repeat(10_000)), "c");
        SourceRecord guarded = guard(4096).apply(original);
        Struct after = ((Struct) guarded.value()).getStruct("after");
        assertEquals(PLACEHOLDER, after.getString("raw_payload"));
        assertEquals("a", after.getString("id"));
        assertEquals("tv", after.getString("device"));
        assertEquals(42L, after.getInt64("duration_ms"));
        assertEquals("key-1", guarded.key());
        assertEquals(original.sourceOffset(), guarded.sourceOffset());
        assertEquals("after.raw_payload:10002", guarded.headers().lastWithName(OversizedValueGuard.HEADER).value());
        assertEquals("x".repeat(10_000), ((Struct) original.value()).getStruct("after").getString("raw_payload"),
                "the original record is not modified");
    }

    @Test
    void theBeforeImageIsGivenUpFirstSoAnUpdateStillCarriesItsNewRow() {
        SourceRecord guarded = guard(8192).apply(record(row("a", "y".repeat(5000)), row("a", "z".repeat(5000)), "u"));
        Struct value = (Struct) guarded.value();
        assertEquals(PLACEHOLDER, value.getStruct("before").getString("raw_payload"));
        assertEquals("z".repeat(5000), value.getStruct("after").getString("raw_payload"));
    }

    @Test
    void bothImagesAreReplacedWhenTheAfterImageAloneIsTooLarge() {
        SourceRecord guarded = guard(4096).apply(record(row("a", "y".repeat(5000)), row("a", "z".repeat(5000)), "u"));
        Struct value = (Struct) guarded.value();
        assertEquals(PLACEHOLDER, value.getStruct("before").getString("raw_payload"));
        assertEquals(PLACEHOLDER, value.getStruct("after").getString("raw_payload"));
    }

    @Test
    void escapedAndMultiByteCharactersCountAtTheirJsonSize() {
        assertEquals(2 + 6, OversizedValueGuard.jsonBytes("\u0001"));
        assertEquals(2 + 2, OversizedValueGuard.jsonBytes("\""));
        assertEquals(2 + 3, OversizedValueGuard.jsonBytes("\u20ac"));
        assertEquals(2 + 4, OversizedValueGuard.jsonBytes("\ud83d\ude00"));
        // 3,000 control characters are 18,000 bytes of JSON, over a 16 kB limit.
        SourceRecord guarded = guard(16_384).apply(record(null, row("a", "\u0001".repeat(3000)), "c"));
        assertEquals(PLACEHOLDER, ((Struct) guarded.value()).getStruct("after").getString("raw_payload"));
    }

    @Test
    void aDeleteWithoutAnAfterImageIsGuardedThroughItsBeforeImage() {
        SourceRecord guarded = guard(4096).apply(record(row("a", "x".repeat(10_000)), null, "d"));
        Struct value = (Struct) guarded.value();
        assertEquals(PLACEHOLDER, value.getStruct("before").getString("raw_payload"));
        assertNull(value.getStruct("after"));
        assertTrue(guarded.headers().lastWithName(OversizedValueGuard.HEADER) != null);
    }
}
