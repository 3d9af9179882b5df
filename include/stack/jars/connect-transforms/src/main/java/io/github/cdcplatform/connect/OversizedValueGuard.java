package io.github.cdcplatform.connect;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;

import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.data.Field;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.header.Headers;
import org.apache.kafka.connect.transforms.Transformation;
import org.apache.kafka.connect.transforms.util.SimpleConfig;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keeps a change that would exceed Kafka's message size from failing the connector task.
 *
 * <p>When the text and binary fields of a record's value would serialize to more than
 * {@code max.bytes} of JSON, the largest of them are replaced by {@code placeholder} until the
 * value fits: those of the before-image first (consumers rarely need it), then those of the
 * after-image. The record keeps its key, operation and source position, so the stream downstream
 * quarantines it with a reason and the operator can find the row; without this one huge row
 * fails the task again and again while the replication slot grows (TiCDC's "handle key only"
 * answers the same problem). A header {@code cdc.oversized} names each replaced field and its size.
 */
public class OversizedValueGuard<R extends ConnectRecord<R>> implements Transformation<R> {

    public static final String MAX_BYTES_CONFIG = "max.bytes";
    public static final String PLACEHOLDER_CONFIG = "placeholder";
    public static final String IMAGES_CONFIG = "images";
    public static final String HEADER = "cdc.oversized";

    public static final ConfigDef CONFIG_DEF = new ConfigDef()
            .define(MAX_BYTES_CONFIG, ConfigDef.Type.LONG, ConfigDef.NO_DEFAULT_VALUE, ConfigDef.Range.atLeast(1024),
                    ConfigDef.Importance.HIGH, "Largest JSON size of the value's text and binary fields that passes unchanged.")
            .define(PLACEHOLDER_CONFIG, ConfigDef.Type.STRING, ConfigDef.NO_DEFAULT_VALUE, ConfigDef.Importance.HIGH,
                    "What replaces a field that does not fit.")
            .define(IMAGES_CONFIG, ConfigDef.Type.LIST, "before,after", ConfigDef.Importance.MEDIUM,
                    "Struct fields of the value whose fields may be replaced, in the order they are given up.");

    private static final Logger LOG = LoggerFactory.getLogger(OversizedValueGuard.class);

    private long maxBytes;
    private String placeholder;
    private List<String> images;

    @Override
    public void configure(Map<String, ?> props) {
        SimpleConfig config = new SimpleConfig(CONFIG_DEF, props);
        maxBytes = config.getLong(MAX_BYTES_CONFIG);
        placeholder = config.getString(PLACEHOLDER_CONFIG);
        images = config.getList(IMAGES_CONFIG);
    }

    @Override
    public R apply(R record) {
        if (!(record.value() instanceof Struct value)) {
            return record;
        }
        long total = jsonBytes(value);
        if (total <= maxBytes) {
            return record;
        }
        Struct guarded = copy(value);
        List<Candidate> candidates = new ArrayList<>();
        for (int rank = 0; rank < images.size(); rank++) {
            String image = images.get(rank);
            Field imageField = value.schema().field(image);
            if (imageField == null || imageField.schema().type() != Schema.Type.STRUCT) {
                continue;
            }
            Struct original = value.getStruct(image);
            if (original == null) {
                continue;
            }
            Struct replaced = copy(original);
            guarded.put(image, replaced);
            for (Field field : original.schema().fields()) {
                long size = jsonBytes(original.get(field));
                if (isText(field.schema()) && size > placeholderBytes(field.schema())) {
                    candidates.add(new Candidate(rank, image, replaced, field, size));
                }
            }
        }
        candidates.sort(Comparator.comparingInt(Candidate::rank).thenComparing(Candidate::size, Comparator.reverseOrder()));
        List<String> replacedFields = new ArrayList<>();
        for (Candidate candidate : candidates) {
            if (total <= maxBytes) {
                break;
            }
            Schema schema = candidate.field().schema();
            candidate.struct().put(candidate.field(), schema.type() == Schema.Type.BYTES
                    ? placeholder.getBytes(StandardCharsets.UTF_8) : placeholder);
            total -= candidate.size() - placeholderBytes(schema);
            replacedFields.add(candidate.image() + "." + candidate.field().name() + ":" + candidate.size());
        }
        if (total > maxBytes) {
            LOG.error("{} key {}: {} bytes of text still exceed {} after replacing {}; Kafka will refuse it",
                    record.topic(), record.key(), total, maxBytes, replacedFields);
        } else {
            LOG.warn("{} key {}: replaced oversized fields {} with the placeholder (limit {} bytes)",
                    record.topic(), record.key(), replacedFields, maxBytes);
        }
        Headers headers = record.headers().duplicate();
        headers.addString(HEADER, String.join(",", replacedFields));
        return record.newRecord(record.topic(), record.kafkaPartition(), record.keySchema(), record.key(),
                record.valueSchema(), guarded, record.timestamp(), headers);
    }

    private long placeholderBytes(Schema schema) {
        return schema.type() == Schema.Type.BYTES ? base64Length(placeholder.getBytes(StandardCharsets.UTF_8).length)
                : jsonBytes(placeholder);
    }

    private static boolean isText(Schema schema) {
        return schema.type() == Schema.Type.STRING || schema.type() == Schema.Type.BYTES;
    }

    private static Struct copy(Struct struct) {
        Struct copy = new Struct(struct.schema());
        for (Field field : struct.schema().fields()) {
            Object value = struct.get(field);
            if (value != null) {
                copy.put(field, value);
            }
        }
        return copy;
    }

    /** The bytes the JSON converter writes for a value's text and binary content (an upper bound). */
    static long jsonBytes(Object value) {
        if (value instanceof String text) {
            long bytes = 2;
            for (int i = 0; i < text.length(); i++) {
                char c = text.charAt(i);
                if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') {
                    bytes += 2;
                } else if (c < 0x20) {
                    bytes += 6;
                } else if (c < 0x80) {
                    bytes += 1;
                } else if (c < 0x800 || Character.isSurrogate(c)) {
                    bytes += 2;  // a surrogate pair is four bytes of UTF-8, two per char
                } else {
                    bytes += 3;
                }
            }
            return bytes;
        }
        if (value instanceof byte[] raw) {
            return base64Length(raw.length);
        }
        if (value instanceof java.nio.ByteBuffer buffer) {
            return base64Length(buffer.remaining());
        }
        if (value instanceof Struct struct) {
            long bytes = 0;
            for (Field field : struct.schema().fields()) {
                bytes += jsonBytes(struct.get(field));
            }
            return bytes;
        }
        if (value instanceof List<?> list) {
            long bytes = 0;
            for (Object item : list) {
                bytes += jsonBytes(item);
            }
            return bytes;
        }
        if (value instanceof Map<?, ?> map) {
            long bytes = 0;
            for (Map.Entry<?, ?> entry : map.entrySet()) {
                bytes += jsonBytes(entry.getKey()) + jsonBytes(entry.getValue());
            }
            return bytes;
        }
        return 0;
    }

    private static long base64Length(long bytes) {
        return 2 + 4 * ((bytes + 2) / 3);
    }

    @Override
    public ConfigDef config() {
        return CONFIG_DEF;
    }

    @Override
    public void close() {
    }

    private record Candidate(int rank, String image, Struct struct, Field field, long size) {
    }
}
